"""The slow-header flood: N connections that send a request head one byte a second.

    .venv/bin/python -m bench.slow_headers --connections 2000 --duration-s 20
    .venv/bin/python -m bench.slow_headers --file-limit 1024      # the proxy's soft limit
    .venv/bin/python -m bench.slow_headers --source DIR --no-new-keys  # an older checkout

Starts `python -m proxy` (the package in `--source`, default this checkout; auth `none`) and
opens N connections that each send `POST /v1/chat/completions HTTP/1.1\\r\\n` and then one byte
a second; a probe GETs `/healthz` every 0.5 s on a new connection (2 s timeout). Reports how long
the slow connections were held and what they were answered, the probes, the proxy's peak RSS,
and how much it logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.procs import raise_nofile_limit

ROOT = Path(__file__).resolve().parents[1]
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\n"


@dataclass
class ProxyOutput:
    lines: int = 0
    bytes: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    port: int = 0
    started: threading.Event = field(default_factory=threading.Event)

    def read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for text in process.stdout:
            self.lines, self.bytes = self.lines + 1, self.bytes + len(text)
            try:
                line = json.loads(text)
            except ValueError:
                continue
            self.levels[line.get("level", "?")] += 1
            self.events[str(line.get("event", "?"))[:60]] += 1
            if line.get("event") == "proxy.started":
                self.port = line["port"]
                self.started.set()


def start_proxy(args: argparse.Namespace, directory: Path) -> subprocess.Popen[str]:
    server: dict[str, object] = {"host": "127.0.0.1", "port": 0}
    if not args.no_new_keys and args.header_timeout_s is not None:
        server["header_timeout_s"] = args.header_timeout_s
    config = {"server": server, "auth": {"mode": "none"},
              "routes": [{"name": "r", "paths": ["/v1/chat/completions"], "provider": "openai",
                          "upstreams": [{"url": "http://127.0.0.1:9"}]}]}  # fmt: skip
    path = directory / "proxy.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    def limits() -> None:
        if args.file_limit:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.file_limit, hard))
        else:
            raise_nofile_limit()

    env = {**os.environ, "PYTHONPATH": str(args.source), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "proxy", "--config", str(path)], cwd=args.source, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=limits,
    )  # fmt: skip


async def slow_client(port: int, until: float, held: list[float], answers: Counter[str]) -> None:
    loop = asyncio.get_running_loop()
    opened = loop.time()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as error:
        answers[f"connect failed: {type(error).__name__}"] += 1
        return
    writer.write(HEAD)
    reading = asyncio.ensure_future(reader.read(200))
    try:
        while loop.time() < until and not reading.done():
            await asyncio.wait([reading], timeout=1)
            if not reading.done():
                writer.write(b"x")
        if reading.done():
            first = reading.result().split(b"\r\n", 1)[0].decode("latin-1")
            answers[first or "closed without an answer"] += 1
            held.append(loop.time() - opened)
        else:
            answers["still open at the end"] += 1
    except OSError:
        answers["reset"] += 1
        held.append(loop.time() - opened)
    finally:
        reading.cancel()
        writer.close()


async def probe(port: int, until: float, latencies: list[float | None]) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        started = loop.time()
        try:
            async with asyncio.timeout(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                ok = (await reader.readline()).startswith(b"HTTP/1.1 200")
                writer.close()
            latencies.append(loop.time() - started if ok else None)
        except (TimeoutError, OSError):
            latencies.append(None)
        await asyncio.sleep(max(0.0, started + 0.5 - loop.time()))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def flood(args: argparse.Namespace, port: int, pid: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    until = loop.time() + args.duration_s
    held: list[float] = []
    answers: Counter[str] = Counter()
    latencies: list[float | None] = []
    tasks = [slow_client(port, until, held, answers) for _ in range(args.connections)]
    probing = asyncio.ensure_future(probe(port, until, latencies))
    peak = 0.0
    clients = asyncio.ensure_future(asyncio.gather(*tasks))
    while not clients.done():
        peak = max(peak, rss_mib(pid))
        await asyncio.wait([clients], timeout=0.5)
    await probing
    ok = [latency for latency in latencies if latency is not None]
    return {
        "answers": dict(answers),
        "held_s_median": round(statistics.median(held), 1) if held else None,
        "held_s_max": round(max(held), 1) if held else None,
        "probes_ok": f"{len(ok)}/{len(latencies)}",
        "probe_ms_median": round(statistics.median(ok) * 1000, 1) if ok else None,
        "peak_rss_mib": round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_headers")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--duration-s", type=float, default=20)
    parser.add_argument("--file-limit", type=int, default=0, help="the proxy's soft limit")
    parser.add_argument("--header-timeout-s", type=float, default=None)
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to run")
    parser.add_argument("--no-new-keys", action="store_true", help="for an older checkout")
    args = parser.parse_args()
    raise_nofile_limit()
    with tempfile.TemporaryDirectory() as directory:
        process = start_proxy(args, Path(directory))
        output = ProxyOutput()
        reader = threading.Thread(target=output.read, args=(process,), daemon=True)
        reader.start()
        try:
            assert output.started.wait(15), "the proxy did not start"
            result = asyncio.run(flood(args, output.port, process.pid))
        finally:
            process.kill()
            process.wait()
        reader.join(timeout=10)  # it ends at the end of the proxy's stdout
    result |= {"log_lines": output.lines, "log_bytes": output.bytes, "levels": dict(output.levels)}
    result["top_events"] = output.events.most_common(4)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
