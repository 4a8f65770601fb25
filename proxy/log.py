"""structlog setup: JSON lines (or console) to stdout; stdlib loggers (aiohttp's) go the same way.

The request id is bound in contextvars by the middleware, so every line of a request carries it.
Every line has a size bound: `bound_strings` cuts each string value (inside lists and dicts too)
to `CUT_AT[key]` characters, `DEFAULT_CUT_AT` for other keys, and marks the cut with
`…[cut N chars]`. Clients control some of those strings (`model`, and whatever reaches an
exception's message); without the cut a 1 MiB model name made a 1 MiB line.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR

DEFAULT_CUT_AT = 1024
CUT_AT = {"model": 256, "exception": 16384, "stack": 16384}  # a traceback needs room


def cut(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its first `limit` and a marker."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[cut {len(text) - limit} chars]"


def _bounded(value: object, limit: int) -> object:
    if isinstance(value, str):
        return cut(value, limit)
    if isinstance(value, list | tuple):
        return [_bounded(item, limit) for item in value]
    if isinstance(value, dict):
        return {key: _bounded(item, limit) for key, item in value.items()}
    return value


def bound_strings(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: every string value cut to its key's bound (see the module doc)."""
    for key, value in event_dict.items():
        event_dict[key] = _bounded(value, CUT_AT.get(key, DEFAULT_CUT_AT))
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to one stream (stdout unless given)."""
    output = stream if stream is not None else sys.stdout
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric_level = _LEVELS[level]
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            bound_strings,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                bound_strings,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # aiohttp's access log duplicates our one `stream.finished` line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str = "proxy") -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
