"""The bundled demo provider (`python -m proxy.demo`): the HTTP side in `app`, what it says in
`text`."""
