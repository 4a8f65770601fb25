"""Helpers the tests share, one module per kind."""
