"""CLI: arguments -> config -> logging -> serve."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import sys

from proxy import keys
from proxy.app import create_app, make_runner
from proxy.config.load import ConfigError, load_config
from proxy.config.models import Config
from proxy.lifecycle import stop_signals
from proxy.listener import ProxySite
from proxy.log import configure_logging, get_logger


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 0..65535")
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="llm-stream-proxy", description="Reverse proxy for LLM token streams."
    )
    parser.add_argument("--config", required=True, help="path to the YAML config")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument(
        "--port", type=port_number, help="listen port, 0 for any free one (overrides server.port)"
    )
    parser.add_argument(
        "--check-config", action="store_true", help="validate the config, print what is wrong, exit"
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="log lines as JSON or for people (overrides logging.format); with json, a config "
        "error is also logged as a config.invalid line on stdout, which by default happens only "
        "when stdout is not a terminal",
    )
    return parser.parse_args(argv)


def _os_reason(error: OSError | UnicodeError) -> str:
    """`Address already in use` rather than asyncio's wording around it; resolver errors as is
    (a host name too long for IDNA is a UnicodeError)."""
    if isinstance(error, UnicodeError):
        return "invalid host name (a label is empty or longer than 63 characters)"
    if error.errno and error.errno > 0 and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)
    return error.strerror or str(error) or type(error).__name__


async def serve(config: Config, host: str, port: int) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (1: could not listen)."""
    log = get_logger("proxy")
    stop = stop_signals()
    app = create_app(config)
    runner = make_runner(app)
    await runner.setup()
    site = ProxySite(runner, host, port, backlog=config.server.listen_backlog)
    try:
        await site.start()
    except (OSError, UnicodeError) as error:  # port in use, no permission, unknown host, ...
        await runner.cleanup()
        reason = _os_reason(error)
        log.error("server.listen_failed", host=host, port=port, error=reason)
        print(f"cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        return 1
    bound_host, bound_port = runner.addresses[0][:2]  # the real port, also for --port 0
    # Modules, config and app live as long as the process: keep them out of every full
    # collection, which otherwise stalls all streams for longer (bench/RESULTS.md, F3).
    gc.collect()
    gc.freeze()
    log.info(
        "proxy.started", host=bound_host, port=bound_port, routes=[r.name for r in config.routes],
        max_connections=site.max_connections,
    )  # fmt: skip
    await stop.wait()
    log.info("proxy.stopping", delay_s=config.server.shutdown_delay_s)
    await app[keys.LIFECYCLE].announce_stop(config.server.shutdown_delay_s)
    await runner.cleanup()
    return 0


def report_config_error(args: argparse.Namespace, error: ConfigError) -> None:
    """The list of problems on stderr, for people; and for log collectors, one `config.invalid`
    JSON line on stdout with the other log lines: with `--log-format json`, or by default when
    stdout is not a terminal (in a terminal the line would only repeat the list)."""
    if args.log_format == "json" or (args.log_format is None and not sys.stdout.isatty()):
        configure_logging("info", "json")
        get_logger("proxy").error("config.invalid", path=args.config, errors=list(error.errors))
    print(f"{args.config}: invalid configuration:\n{error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        report_config_error(args, error)
        sys.exit(1)
    if args.check_config:
        print(f"{args.config}: OK ({len(config.routes)} routes)")
        return
    configure_logging(config.logging.level, args.log_format or config.logging.format)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    if asyncio.run(serve(config, host, port)) != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
