"""`./scripts/demo`: the demo provider and the proxy as this script's own children, one stream per
dialect shown through them, then serving until Ctrl-C (`--once`: exit after the streams).

What is shown must come from these children, never from another server that happens to listen
on the demo's ports (a demo still running, say). So each child reports the port it bound (the
provider prints `demo provider listening on URL`, the proxy logs `proxy.started ... port=N`), and
nothing is sent anywhere before that report. A child whose port is taken has its own error
printed here and is started again on a free port, announced with the curl command that uses
it. Any other failure of a child is printed here with what it said, and the demo exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp

from proxy.demo.children import Child, spawn
from proxy.demo.show import say, show_all

PROVIDER_URL = "http://127.0.0.1:9100"  # where config/demo.yaml expects the provider
PROVIDER_READY = re.compile(r"^demo provider listening on (http://\S+)$")
PROXY_READY = re.compile(r"\bproxy\.started\b.*\bport=(\d+)")
PROXY_HOST = re.compile(r"\bhost=(\S+)")
STARTUP_S = 30.0
LOG_LINES_S = 5.0  # for the proxy's log lines of the requests just shown
TAKEN = os.strerror(errno.EADDRINUSE)  # how both children say that a port is taken


class DemoFailed(Exception):
    """The demo cannot go on; the message says why (a child's own words included)."""


def loud(message: str) -> None:
    say(f"\n*** {message} ***")


async def start_child(
    name: str, command: Callable[[int], list[str]], port: int, log: Path, ready: re.Pattern[str]
) -> tuple[Child, str]:
    """The child started on `port`, or on a free port if that one is taken; its ready line."""
    for attempt in (port, 0) if port else (0,):
        child = await spawn(name, command(attempt), log, ready)
        try:
            line = await child.started(STARTUP_S)
        except TimeoutError as error:
            await child.stop()
            raise DemoFailed(f"{error}; what it said is in {log}") from None
        if line is not None:
            return child, line
        await child.stop()  # it has exited: this closes its log
        print(child.failure(), file=sys.stderr, flush=True)
        if attempt == 0 or not any(TAKEN in said for said in child.stderr):
            raise DemoFailed(f"the {name} could not start (log: {log})")
        loud(f"port {port} is taken by another program (another demo still running?): "
             f"this demo starts its {name} on a free port instead")  # fmt: skip
    raise AssertionError("unreachable: the free-port attempt returns or raises")


def provider_command(args: argparse.Namespace) -> Callable[[int], list[str]]:
    pace = ["--token-delay-ms", str(args.token_delay_ms),
            "--first-token-delay-ms", str(args.first_token_delay_ms)]  # fmt: skip
    return lambda port: [sys.executable, "-m", "proxy.demo", "--port", str(port), *pace]


def proxy_command(config: Path) -> Callable[[int], list[str]]:
    base = [sys.executable, "-m", "proxy", "--config", str(config), "--log-format", "console"]
    return lambda port: [*base, "--port", str(port)]


def proxy_config(path: Path, provider_url: str, logs: Path) -> Path:
    """A copy of the proxy's config sending to the provider where it really listens."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DemoFailed(f"cannot read {path}: {error.strerror}") from None
    copy = logs / "proxy.yaml"
    copy.write_text(text.replace(PROVIDER_URL, provider_url), encoding="utf-8")
    return copy


def proxy_url(ready_line: str) -> str:
    port = PROXY_READY.search(ready_line)
    host = PROXY_HOST.search(ready_line)
    assert port is not None
    name = host.group(1) if host else "127.0.0.1"
    name = "127.0.0.1" if name in ("0.0.0.0", "::") else name
    return f"http://{f'[{name}]' if ':' in name else name}:{port.group(1)}"


async def check_ready(url: str) -> None:
    """One request to the port our proxy said it bound: it must answer as a ready proxy."""
    async with aiohttp.ClientSession() as session, session.get(url + "/readyz") as response:
        if response.status != 200:
            raise DemoFailed(f"the proxy at {url} says it is not ready (HTTP {response.status})")


async def start_both(args: argparse.Namespace, logs: Path, children: list[Child]) -> str:
    """Provider, then proxy; the proxy's URL once it said where it listens and is ready."""
    provider, line = await start_child(
        "demo provider", provider_command(args), args.provider_port, logs / "provider.log",
        PROVIDER_READY,
    )  # fmt: skip
    children.append(provider)
    provider_match = PROVIDER_READY.search(line)
    assert provider_match is not None
    config = proxy_config(args.config, provider_match.group(1), logs)
    proxy, line = await start_child(
        "proxy", proxy_command(config), args.proxy_port, logs / "proxy.log", PROXY_READY
    )
    children.append(proxy)
    url = proxy_url(line)
    await check_ready(url)
    say(f"demo provider: {provider_match.group(1)}  (pid {provider.process.pid})")
    say(f"proxy:         {url}  (pid {proxy.process.pid}, config {args.config})")
    say(f"logs:          {logs}")
    return url


async def show_log_lines(proxy: Child, logs: Path, requests: int) -> None:
    def finished(lines: list[str]) -> list[str]:
        return [line for line in lines if "stream.finished" in line]

    await proxy.wait_for_output(lambda lines: len(finished(lines)) >= requests, LOG_LINES_S)
    say(f"\n$ grep stream.finished {logs / 'proxy.log'}   (one line per request)")
    for line in finished(proxy.stdout):
        say(line)


def curl_hint(url: str) -> str:
    body = '{"model": "demo", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    return (
        f"  curl -N {url}/v1/chat/completions -H 'content-type: application/json' \\\n"
        f"    -d '{body}'"
    )


async def serve(children: list[Child], url: str, args: argparse.Namespace) -> int:
    """Until Ctrl-C (0), or until a child fails (1, with its error printed)."""
    moved = args.proxy_port and not url.endswith(f":{args.proxy_port}")
    moved_note = f" (not {args.proxy_port}, which is taken)" if moved else ""
    say(f"\nThe proxy is serving on {url}{moved_note}; metrics at {url}/metrics. Try:")
    say(curl_hint(url))
    say("Ctrl-C stops it.")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    waits = {asyncio.create_task(child.process.wait()): child for child in children}
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopping, *waits}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopping, *waits):
        task.cancel()
    failed = [waits[task] for task in done if task in waits and task.result() != 0]
    for child in failed:  # exit 0: stopped by the same Ctrl-C, which reached it too
        print(child.failure(), file=sys.stderr, flush=True)
    return 1 if failed else 0


async def run(args: argparse.Namespace) -> int:
    logs = Path(tempfile.mkdtemp(prefix="llm-stream-proxy-demo-"))
    children: list[Child] = []
    try:
        url = await start_both(args, logs, children)
        await show_all(url, args.raw)
        await show_log_lines(children[1], logs, requests=2)
        return 0 if args.once else await serve(children, url, args)
    except DemoFailed as failure:
        print(f"demo: {failure}", file=sys.stderr, flush=True)
        return 1
    except aiohttp.ClientError as error:
        exited = [child.failure() for child in children if child.process.returncode is not None]
        print("\n".join([f"demo: talking to the proxy failed: {error}", *exited]), file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            await child.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./scripts/demo",
        description="Start the demo provider and the proxy, show a stream per dialect, serve.",
    )
    add = parser.add_argument
    add("--once", action="store_true", help="exit after showing the streams")
    add("--raw", action="store_true", help="also print each event as it came over the wire")
    add("--proxy-port", type=int, default=8080, help="tried first; if taken, any free port")
    add("--provider-port", type=int, default=9100, help="tried first; if taken, any free port")
    add("--config", type=Path, default=Path("config/demo.yaml"), help="the proxy's config")
    add("--token-delay-ms", type=float, default=40.0, help="the provider's pause between tokens")
    add("--first-token-delay-ms", type=float, default=300.0, help="its pause before the first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before serving: children are stopped
        sys.exit(asyncio.run(run(args)))
    sys.exit(130)


if __name__ == "__main__":
    main()
