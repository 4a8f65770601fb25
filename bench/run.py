"""`python -m bench.run`: start the upstream and the proxy, run the scenarios, print markdown.

Processes, all on 127.0.0.1: the fast fake upstream (`bench.upstream`, its own process), the
proxy (`python -m proxy`, its own process, JSON logs at level info to a file: one line per
request, as in production), and this process: the aiohttp load client plus an in-process copy
of the upstream that timestamps disconnects (scenario 4). The memory scenarios each get a fresh,
warmed-up proxy, so memory freed by earlier scenarios cannot hide what the streams cost.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.env import Bench, environment
from bench.latency import measure_disconnects, measure_ttft
from bench.load import LoadResult, measure_memory, run_load
from bench.procs import machine_description, raise_nofile_limit

SCENARIOS = ("ttft", "disconnect", "throughput", "cpu", "paced", "burst", "memory",
             "memory-prompt")  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = parser.add_argument
    add("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    add("--quick", action="store_true", help="small sizes: a smoke run in well under a minute")
    add("--streams", type=int, default=1000, help="concurrent open streams (3)")
    add("--hold-s", type=float, default=10.0, help="how long streams stay silent (3)")
    add("--prompt-kib", type=int, default=64, help="request body size in memory-prompt (3b)")
    add("--heartbeat-s", type=float, default=1.0, help="the proxy's heartbeat_s")
    add("--ttft-requests", type=int, default=200, help="measured requests per path (1)")
    add("--disconnect-trials", type=int, default=50, help="trials per variant (4)")
    add("--single-events", type=int, default=100_000, help="events in the one-stream run (5)")
    add("--cpu-events", type=int, default=200_000, help="events relayed per run (2)")
    add("--cpu-streams", type=int, default=50, help="concurrent streams (2)")
    add("--paced-streams", type=int, default=100, help="concurrent streams (2b)")
    add("--paced-events", type=int, default=200, help="events per stream (2b)")
    add("--paced-delay-ms", type=float, default=20.0, help="token delay (2b)")
    add("--burst-streams", type=int, default=1000, help="streams started at once (2c)")
    add("--repeat", type=int, default=3, help="runs of each of 2, 2b and 5 per target")
    add("--profile-proxy", type=Path, help="run the proxy under cProfile, stats to PATH.<n> "
        "(CPU figures are then inflated by the profiler)")  # fmt: skip
    add(
        "--proxy-gc",
        metavar="MODE",
        help="run the proxy through bench.proxy_wrap: default "
        "(measure only), off, freeze or threshold=N; GC counts and CPU land in the report",
    )
    add("--proxy-backlog", type=int, metavar="N", help="run the proxy through bench.proxy_wrap "
        "with listen backlog N (instead of server.listen_backlog, 1024 by default)")  # fmt: skip
    add("--markdown", type=Path, help="also write the markdown report to this file")
    add("--keep", action="store_true", help="keep the temp dir (config and child logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.ttft_requests, args.cpu_events, args.streams, args.hold_s = 30, 20_000, 100, 4.0
        args.disconnect_trials, args.single_events, args.paced_streams = 5, 10_000, 50
        args.burst_streams, args.repeat = 100, 1
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    return args


async def _loads(bench: Bench, repeat: int, streams: int, tokens: int, delay_ms: float = 0.0
                 ) -> list[LoadResult]:  # fmt: skip
    runs = []
    for _ in range(repeat):
        for target in (bench.direct, bench.proxy):
            runs.append(await run_load(bench.session, target, streams, tokens, delay_ms))
    return runs


async def _memory(bench: Bench, prompt_kib: int, rounds: int) -> str:
    """On a fresh proxy (its idle RSS a clean baseline); a second round checks for leaks."""
    args = bench.args
    await bench.start_proxy()
    results = [
        await measure_memory(bench.session, bench.proxy, args.streams, args.hold_s,
                             args.heartbeat_s, prompt_kib * 1024)
        for _ in range(rounds)
    ]  # fmt: skip
    return report.memory_section(results, "3b" if prompt_kib else "3")


async def run_scenario(name: str, bench: Bench) -> str:
    args, session = bench.args, bench.session
    if name in ("memory", "memory-prompt"):
        if name == "memory":
            return await _memory(bench, 0, 1 if args.quick else 2)
        return await _memory(bench, args.prompt_kib, 1)
    if name == "ttft":
        ttft = await measure_ttft(session, bench.direct.url, bench.proxy.url, args.ttft_requests,
                                  20)  # fmt: skip
        return report.ttft_section(ttft)
    if name == "disconnect":
        trials = await measure_disconnects(session, bench.proxy.url, bench.inproc,
                                           args.disconnect_trials)  # fmt: skip
        return report.disconnect_section(trials)
    if name == "throughput":
        runs = await _loads(bench, args.repeat, 1, args.single_events)
        return report.load_section("5. One stream's throughput (token delay 0)", runs)
    if name == "cpu":
        per_stream = max(1, args.cpu_events // args.cpu_streams)
        runs = await _loads(bench, args.repeat, args.cpu_streams, per_stream)
        return report.load_section("2. CPU per relayed event (token delay 0)", runs)
    if name == "burst":
        runs = await _loads(bench, 1, args.burst_streams, 1)
        return report.burst_section(runs)
    runs = await _loads(bench, args.repeat, args.paced_streams, args.paced_events,
                        args.paced_delay_ms)  # fmt: skip
    return report.load_section("2b. CPU per relayed event, paced (one event per chunk)", runs)


async def run_all(args: argparse.Namespace, workdir: Path) -> list[str]:
    sections: list[str] = []
    async with environment(args, workdir) as bench:
        for name in SCENARIOS:
            if name in args.only:
                started = time.monotonic()
                sections.append(await run_scenario(name, bench))
                print(f"[bench] {name} done in {time.monotonic() - started:.1f} s", file=sys.stderr)
        logs = list(bench.proxy_logs)
    sections.append(report.proxy_log_summary(logs))
    return sections


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    nofile = raise_nofile_limit()
    workdir = Path(tempfile.mkdtemp(prefix="llm-bench-"))
    started = time.monotonic()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        sections = asyncio.run(run_all(args, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    command = " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])])
    head = [
        f"- date: {now}", f"- machine: {machine_description()}", f"- command: {command}",
        f"- run time: {time.monotonic() - started:.0f} s; RLIMIT_NOFILE soft {nofile}",
    ]  # fmt: skip
    if args.keep:
        head.append(f"- config and child logs kept in {workdir}")
    text = "\n".join(head) + "\n\n" + "\n\n".join(sections) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
