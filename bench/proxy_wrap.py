"""Run the proxy with one thing changed from outside, for diagnostics: the GC, the listen backlog.

`python -m bench.proxy_wrap [--gc MODE] [--backlog N] <proxy args>`. `--gc` is `default` (only
measure), `off` (`gc.disable()`), `freeze` (`gc.freeze()` before the app starts), or
`threshold=N` (gen-0 threshold N, generations 1 and 2 at 50 and 1000); at exit one JSON line
goes to stderr: `{"event": "bench.gc", "collections": [...], "cpu_s": [...],
"max_pause_ms": [...]}`. `--backlog` replaces the listen backlog of the proxy's `web.TCPSite`
(aiohttp's default is 128).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from aiohttp import web

from proxy.__main__ import main as proxy_main


class GcMeter:
    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.cpu_s = [0.0, 0.0, 0.0]
        self.max_pause_s = [0.0, 0.0, 0.0]  # wall time of the longest collection
        self._started = 0.0
        self._wall = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started, self._wall = time.process_time(), time.perf_counter()
            return
        generation = int(info["generation"])
        self.collections[generation] += 1
        self.cpu_s[generation] += time.process_time() - self._started
        pause = time.perf_counter() - self._wall
        self.max_pause_s[generation] = max(self.max_pause_s[generation], pause)

    def line(self, mode: str) -> str:
        cpu = [round(seconds, 4) for seconds in self.cpu_s]
        pauses = [round(seconds * 1000, 1) for seconds in self.max_pause_s]
        return json.dumps({"event": "bench.gc", "level": "bench", "mode": mode,
                           "collections": self.collections, "cpu_s": cpu,
                           "max_pause_ms": pauses})  # fmt: skip


def apply_gc(mode: str) -> None:
    if mode == "off":
        gc.disable()
    elif mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode.startswith("threshold="):
        gc.set_threshold(int(mode.split("=", 1)[1]), 50, 1000)
    elif mode != "default":
        raise SystemExit(f"unknown GC mode {mode!r}")


def apply_backlog(backlog: int) -> None:
    original = web.TCPSite.__init__

    def site_init(self: web.TCPSite, *args: Any, **kwargs: Any) -> None:
        kwargs["backlog"] = backlog
        original(self, *args, **kwargs)

    web.TCPSite.__init__ = site_init  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_wrap")
    parser.add_argument("--gc", default="default", help="default | off | freeze | threshold=N")
    parser.add_argument("--backlog", type=int, help="the proxy's listen backlog")
    args, proxy_args = parser.parse_known_args(argv)
    meter = GcMeter()
    gc.callbacks.append(meter)
    apply_gc(args.gc)
    if args.backlog is not None:
        apply_backlog(args.backlog)
    try:
        proxy_main(proxy_args)
    finally:
        print(meter.line(args.gc), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
