"""The configuration: the frozen objects the proxy uses (`models`), their field types and checks
(`fields`), the YAML document and its reader (`document`), and loading (`load`).

Import from the submodules: this package imports nothing, so the pure core can use
`proxy.config.models` without pulling in the YAML reader.
"""
