"""llm-stream-proxy: a reverse proxy for LLM token streams."""

__version__ = "0.1.0"
