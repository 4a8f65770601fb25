"""`python -m proxy` under a low file limit, flooded with connections that never send a request.

Before the connection limit, asyncio accepted until the process ran out of file descriptors,
then logged every failed accept (thousands of tracebacks a second) and nobody was served. Now the
proxy stops accepting at its limit (derived from the file limit), says so once, and serves again
as soon as connections close; with a limit configured above the file limit, an accept that fails
for want of descriptors pauses it the same way (and it retries every second, silently).
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FILE_LIMIT = 128  # derived max_connections: (128 - 64) - min(4096, 32) = 32
FLOOD = 150
WAIT_S = 15
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Lines:
    """The JSON lines a process writes on stdout, read by a thread (they may come by the MB)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for text in process.stdout:
            self.raw.append(text)
            try:
                line = json.loads(text)
            except ValueError:
                continue
            self._queue.put(line)
        self._queue.put(None)

    def until(self, event: str) -> dict[str, Any]:
        """The next line whose event is `event` (every line read on the way is kept)."""
        while True:
            line = self._queue.get(timeout=WAIT_S)
            assert line is not None, f"stdout ended before {event}: {self.raw[-5:]}"
            self.seen.append(line)
            if line.get("event") == event:
                return line

    def rest(self) -> list[dict[str, Any]]:
        self._thread.join(timeout=WAIT_S)
        while (line := self._queue.get_nowait()) is not None:
            self.seen.append(line)
        return self.seen


def low_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, hard))


@contextmanager
def proxy_process(
    tmp_path: Path, server: dict[str, Any]
) -> Iterator[tuple[subprocess.Popen[str], Lines, int]]:
    config = {
        "server": {"host": "127.0.0.1", "port": 0, **server},
        "auth": {"mode": "none"},
        "routes": [{"name": "r", "paths": ["/v1/chat/completions"], "provider": "openai",
                    "upstreams": [{"url": "http://127.0.0.1:9"}]}],
    }  # fmt: skip
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "--config", str(path)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=low_file_limit,
    )  # fmt: skip
    try:
        lines = Lines(process)
        started = lines.until("proxy.started")
        yield process, lines, started["port"]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT_S)


@pytest.mark.parametrize(
    ("server", "reason", "maximum"),
    [({}, "max_connections", 32), ({"max_connections": 1000}, "EMFILE", 1000)],
    ids=["derived-limit", "limit-above-the-file-limit"],
)
def test_at_its_limit_the_proxy_stops_accepting_says_so_once_and_serves_again(
    tmp_path: Path, server: dict[str, Any], reason: str, maximum: int
) -> None:
    with proxy_process(tmp_path, server) as (process, lines, port), ExitStack() as held:
        for _ in range(FLOOD):  # connections that never send a request
            held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S))
        paused = lines.until("connections.paused")  # a failed accept retries every second
        assert (paused["reason"], paused["max_connections"]) == (reason, maximum)
        held.close()  # the flood goes away: the proxy accepts (and closes) what waited
        with DIRECT.open(f"http://127.0.0.1:{port}/healthz", timeout=WAIT_S) as response:
            assert response.status == 200
        lines.until("connections.resumed")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_S) == 0
        seen = lines.rest()
    events = [line.get("event") for line in seen]
    assert events.count("connections.paused") == 1, events
    assert events.count("connections.resumed") == 1, events
    assert [line for line in seen if line.get("level") == "error"] == []
    assert len(lines.raw) < 20, lines.raw[:20]
    warned = [line for line in seen if line.get("event") == "connections.limit_above_file_limit"]
    assert len(warned) == (1 if server else 0)
