"""`python -m bench.slow_readers`: what clients that read nothing cost the proxy (issue 8.11).

The fast upstream (`bench.upstream`, token delay 0) and the proxy (`python -m proxy`, JSON log at
level info to a file) run as child processes on 127.0.0.1, as in `bench.run`; the proxy's
`client_stall_s` is `--stall-s` (5 s, the issue's figure). `--clients` raw sockets (500) each
send a streaming request for an endless stream, all at once, and never read a byte. Measured:

- the proxy's RSS (`/proc/<pid>/status`) idle after a warm-up, and its peak (sampled every 50 ms)
  while the streams are open: per client = (peak - idle) / clients;
- per stream, request sent -> the proxy's `stream.finished` line for it (its timestamp): when the
  proxy dropped it. The rule: within `client_stall_s` + 1 s, however many streams;
- per stream, when the client's receive queue (FIONREAD, sampled with the RSS) last grew: from
  then on the client's kernel takes nothing more, which is the earliest the proxy can tell that
  the client is not reading (until then its bytes are accepted, as a reading client's are). So
  request sent -> dropped = filling the client's receive buffer (the relay's pace, shared by
  every stream) + its receive buffer full -> dropped (the proxy's stall rule);
- the outcomes of those lines.

Kernel socket buffers are not in RSS. `--rcvbuf N` shrinks the clients' receive buffers (default:
the kernel's).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fcntl
import json
import shutil
import socket
import statistics
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.client import make_session, run_stream
from bench.procs import (
    Child,
    free_port,
    machine_description,
    raise_nofile_limit,
    rss_kib,
    start_child,
    wait_ready,
    write_config,
)
from bench.upstream import request_body

CHAT_PATH = "/v1/chat/completions"
ENDLESS_TOKENS = 100_000_000  # the stream never ends by itself: only the drop ends it
SAMPLE_S = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_readers", description=__doc__)
    parser.add_argument("--clients", type=int, default=500, help="clients that read nothing")
    parser.add_argument("--stall-s", type=float, default=5.0, help="the proxy's client_stall_s")
    parser.add_argument("--batch", type=int, default=16, help="upstream events per write")
    parser.add_argument("--rcvbuf", type=int, default=0, help="clients' SO_RCVBUF (0: default)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs)")
    return parser.parse_args(argv)


@dataclass
class Silent:
    sock: socket.socket
    request_id: str
    sent_at: float  # time.time() once the request was sent: from then on nothing is read
    queued: int = 0  # bytes in the client's receive queue at the last sample
    full_at: float = 0.0  # time.time() of the sample at which `queued` last grew

    def sample(self, now: float) -> None:
        if self.sock.fileno() < 0:
            return
        queued = int.from_bytes(fcntl.ioctl(self.sock, termios.FIONREAD, b"\0" * 4), "little")
        if queued != self.queued:
            self.queued, self.full_at = queued, now


async def silent_client(port: int, request_id: str, body: bytes, rcvbuf: int) -> Silent:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        f"X-Request-Id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    await loop.sock_sendall(sock, head.encode() + body)
    return Silent(sock, request_id, time.time())


def finished_at(log_path: Path, prefix: str) -> dict[str, tuple[float, str]]:
    """request id -> (wall time of its `stream.finished` line, outcome), for ids with `prefix`."""
    found: dict[str, tuple[float, str]] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if '"stream.finished"' not in line:
            continue
        record = json.loads(line)
        request_id = str(record.get("request_id", ""))
        if request_id.startswith(prefix):
            stamp = datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            found[request_id] = (stamp.timestamp(), str(record["outcome"]))
    return found


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(args: argparse.Namespace, workdir: Path) -> list[str]:
    upstream_port, proxy_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    config = write_config(workdir, proxy_port, upstream_url, upstream_url, heartbeat_s=15)
    document = yaml.safe_load(config.read_text())
    document["defaults"]["timeouts"]["client_stall_s"] = args.stall_s
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    upstream = start_child("upstream", ["-m", "bench.upstream", "--port", str(upstream_port)],
                           workdir)  # fmt: skip
    proxy: Child | None = None
    clients: list[Silent] = []
    try:
        await wait_ready(upstream, upstream_url + "/healthz")
        argv = ["-m", "proxy", "--config", str(config), "--port", str(proxy_port)]
        proxy = start_child("proxy", argv, workdir)
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        await wait_ready(proxy, proxy_url + "/readyz")
        async with make_session() as session:
            for _ in range(20):  # warm up: imports, pools, first allocations
                result = await run_stream(session, proxy_url + CHAT_PATH, request_body(8))
                assert result.done, result
        await asyncio.sleep(1.0)  # let the warm-up's garbage go before the idle figure
        idle_kib = rss_kib(proxy.pid)

        body = request_body(ENDLESS_TOKENS, batch=args.batch)
        opening = [silent_client(proxy_port, f"slow-{n:04d}", body, args.rcvbuf)
                   for n in range(args.clients)]  # fmt: skip
        clients = list(await asyncio.gather(*opening))
        peak_kib = idle_kib
        ended: dict[str, tuple[float, str]] = {}
        deadline = time.monotonic() + args.stall_s + 120
        while len(ended) < args.clients and time.monotonic() < deadline:
            await asyncio.sleep(SAMPLE_S)
            peak_kib = max(peak_kib, rss_kib(proxy.pid))
            ended = finished_at(proxy.log_path, "slow-")
            now = time.time()
            for client in clients:
                if client.request_id not in ended:
                    client.sample(now)
    finally:
        for client in clients:
            client.sock.close()
        if proxy is not None:
            proxy.stop()
        upstream.stop()

    return report(args, clients, ended, idle_kib, peak_kib)


def spread(values: list[float]) -> str:
    return (f"{min(values):.2f} / {statistics.median(values):.2f} / "
            f"{quantile(values, 0.95):.2f} / {max(values):.2f}")  # fmt: skip


def report(
    args: argparse.Namespace, clients: list[Silent], ended: dict[str, tuple[float, str]],
    idle_kib: int, peak_kib: int,
) -> list[str]:  # fmt: skip
    done = [c for c in clients if c.request_id in ended]
    drops = [ended[c.request_id][0] - c.sent_at for c in done]
    fills = [c.full_at - c.sent_at for c in done if c.full_at]
    after_full = [ended[c.request_id][0] - c.full_at for c in done if c.full_at]
    outcomes: dict[str, int] = {}
    for _, outcome in ended.values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    late = sum(1 for drop in drops if drop > args.stall_s + 1)
    late_after_full = sum(1 for wait in after_full if wait > args.stall_s + 1)
    lines = [
        f"# Clients that read nothing ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"- machine: {machine_description()}",
        f"- {args.clients} clients, client_stall_s {args.stall_s:g}, upstream batch "
        f"{args.batch} events per write, client SO_RCVBUF {args.rcvbuf or 'default'}",
        "",
        "| measurement | value |",
        "| --- | --- |",
        f"| proxy RSS idle / peak | {idle_kib / 1024:.0f} MiB / {peak_kib / 1024:.0f} MiB |",
        f"| RSS per client that reads nothing | {(peak_kib - idle_kib) / args.clients:.0f} KiB |",
    ]
    if drops:
        lines += [
            f"| request sent -> dropped (min / median / p95 / max) | {spread(drops)} s |",
            f"| dropped later than client_stall_s + 1 s ({args.stall_s + 1:g} s) after the "
            f"request | {late} of {len(drops)} |",
        ]
    if fills:
        queued = statistics.median(c.queued for c in done if c.full_at) / 1024
        lines += [
            f"| request sent -> client's receive buffer full (min / median / p95 / max) | "
            f"{spread(fills)} s |",
            f"| client's receive queue when full, median | {queued:.0f} KiB |",
            "| receive buffer full -> dropped (min / median / p95 / max) | "
            f"{spread(after_full)} s |",
            f"| dropped later than client_stall_s + 1 s after the buffer was full | "
            f"{late_after_full} of {len(after_full)} |",
        ]
    lines += [
        f"| streams never ended (within client_stall_s + 120 s) | {args.clients - len(drops)} |",
        f"| outcomes | {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))} |",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_nofile_limit()
    workdir = Path(tempfile.mkdtemp(prefix="llm-slow-readers-"))
    try:
        lines = asyncio.run(measure(args, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        lines.append(f"\n- config and logs kept in {workdir}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
