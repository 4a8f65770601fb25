"""Markdown for each scenario's result, and a look at the proxy's own log lines."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from bench.latency import DisconnectResult, TtftResult
from bench.load import LoadResult, MemoryResult
from bench.stats import Summary, table


def ttft_section(result: TtftResult) -> str:
    rows = [
        [one.label, len(one.ttft), one.summary.ms(3), Summary.of(one.headers).ms(3),
         f"{one.new_upstream_connections} / {len(one.ttft)}"]
        for one in result.series
    ]  # fmt: skip
    header = ["path", "requests", "TTFT ms median / p95 / max",
              "headers ms median / p95 / max", "on a new upstream connection"]  # fmt: skip
    added = (
        f"- added by the proxy: {result.added() * 1000:.3f} ms median, "
        f"{result.added(0.95) * 1000:.3f} ms p95"
    )
    errors = f"- errors: {len(result.errors)}"
    if result.errors:
        errors += f" (first: {result.errors[0]})"
    reuse_rows = [
        [one.label, len(one.ttft), f"{one.closed_after} / {len(one.ttft)}", one.summary.ms(3)]
        for one in result.reuse
    ]
    reuse_header = ["how the upstream ends its body", "requests",
                    "upstream connection not reused after the request",
                    "TTFT ms median / p95 / max"]  # fmt: skip
    return (
        "### 1. Added TTFT at one stream\n\n" + table(header, rows) + "\n\n"
        + added + "\n" + errors + "\n\n"
        + "#### 1b. Upstream keep-alive after a completed stream (sequential, through the proxy)"
        + "\n\n" + table(reuse_header, reuse_rows)
    )  # fmt: skip


def _load_row(result: LoadResult) -> list[object]:
    per_chunk = result.events / result.chunks if result.chunks else 0.0
    per_10k = f"{result.proxy_cpu_per_10k:.3f}" if result.target == "proxy" else "-"
    return [
        result.target, f"{result.streams} x {result.tokens}", f"{result.token_delay_ms:g}",
        result.events, f"{result.wall_s:.2f}", f"{result.client_rate:,.0f}",
        f"{result.upstream_rate:,.0f}", f"{per_chunk:.1f}",
        f"{result.cpu.proxy:.2f} ({result.cpu.proxy_user:.2f} / {result.cpu.proxy_system:.2f})",
        f"{result.cpu.upstream:.2f}", f"{result.cpu.bench:.2f}", per_10k, len(result.failures),
    ]  # fmt: skip


def load_section(title: str, results: list[LoadResult]) -> str:
    header = [
        "target", "streams x events", "token delay ms", "events", "wall s", "client ev/s",
        "upstream ev/s (to its last write)", "events per client read", "proxy CPU s (user / sys)",
        "upstream CPU s", "bench CPU s", "proxy CPU s per 10k events", "failed streams",
    ]  # fmt: skip
    body = table(header, [_load_row(result) for result in results])
    notes = [_medians(results, target) for target in ("direct", "proxy")]
    notes += [f"- failure: {f}" for result in results for f in result.failures[:2]]
    return f"### {title}\n\n{body}\n\n" + "\n".join(notes)


def _medians(results: list[LoadResult], target: str) -> str:
    mine = [result for result in results if result.target == target]
    rate = statistics.median(result.client_rate for result in mine)
    line = f"- {target}, median of {len(mine)} runs: {rate:,.0f} events/s at the client"
    if target == "proxy":
        cpu = statistics.median(result.proxy_cpu_per_10k for result in mine)
        line += f"; proxy CPU {cpu:.3f} s per 10k events ({cpu * 100:.1f} µs per event)"
    return line


def burst_section(results: list[LoadResult]) -> str:
    header = ["target", "streams", "wall s", "first event ms median / p95 / max",
              "proxy CPU s (user / sys)", "proxy CPU ms per stream", "upstream CPU s",
              "bench CPU s", "failed streams", "TCP counters that moved"]  # fmt: skip
    rows = [
        [r.target, r.streams, f"{r.wall_s:.2f}", r.first_event.ms(1),
         f"{r.cpu.proxy:.2f} ({r.cpu.proxy_user:.2f} / {r.cpu.proxy_system:.2f})",
         f"{r.cpu.proxy / r.streams * 1000:.2f}" if r.target == "proxy" else "-",
         f"{r.cpu.upstream:.2f}", f"{r.cpu.bench:.2f}", len(r.failures), _counters(r.tcp)]
        for r in results
    ]  # fmt: skip
    title = "### 2c. Stream set-up cost: one-token streams all started at once"
    return title + "\n\n" + table(header, rows)


def _counters(moved: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(moved.items())) or "none"


def memory_section(rounds: list[MemoryResult], number: str = "3") -> str:
    result = rounds[0]
    rows = [
        ["proxy RSS idle (after warm-up)", f"{result.idle_kib / 1024:.1f} MiB"],
        ["proxy RSS with all streams open (max of 5 samples)",
         f"{max(result.open_kib) / 1024:.1f} MiB"],
        ["per open stream (max - idle) / streams", f"{result.per_stream_kib:.1f} KiB"],
        ["per open stream, median sample", f"{result.per_stream_median_kib:.1f} KiB"],
        ["proxy RSS 1 s after all streams ended", f"{result.after_kib / 1024:.1f} MiB"],
        ["proxy open fds idle / open", f"{result.fds_idle} / {result.fds_open}"],
        ["streams that got their first content event", f"{result.got_first} / {result.streams}"],
        ["streams still open when RSS was sampled", f"{result.open_at_sample} / {result.streams}"],
        ["time to first event, ms median / p95 / max", result.first_event.ms(1)],
        ["heartbeats per stream min / median / max",
         f"{result.heartbeats.min:.0f} / {result.heartbeats.median:.0f} / "
         f"{result.heartbeats.max:.0f}"],
        ["streams completed byte-exact with [DONE] after the hold",
         f"{result.streams - len(result.failures)} / {result.streams}"],
        ["TCP counters that moved (machine-wide)", _counters(result.tcp)],
    ]  # fmt: skip
    for index, again in enumerate(rounds[1:], start=2):
        rows += [
            [f"round {index} (same proxy): RSS max while open / 1 s after",
             f"{max(again.open_kib) / 1024:.1f} / {again.after_kib / 1024:.1f} MiB"],
            [f"round {index}: first events / completed byte-exact",
             f"{again.got_first} / {again.streams - len(again.failures)}"],
        ]  # fmt: skip
    title = (
        f"### {number}. Memory per open stream ({result.streams} streams, request body "
        f"{result.request_bytes:,} B, silent for {result.hold_s:g} s, heartbeat every "
        f"{result.heartbeat_s:g} s; fresh proxy)"
    )
    failures = "".join(f"\n- failure: {f}" for f in result.failures[:3])
    return title + "\n\n" + table(["what", "value"], rows) + failures


def disconnect_section(results: list[DisconnectResult]) -> str:
    header = ["when the client leaves", "how", "trials ok", "missed (>5 s)",
              "ms median / p95 / max"]  # fmt: skip
    rows = [
        [r.name, r.how, len(r.latencies), r.missed, r.summary.ms(2) if r.latencies else "-"]
        for r in results
    ]
    errors = [f"- {r.name}: {e}" for r in results for e in r.errors[:2]]
    section = "### 4. Disconnect -> upstream close\n\n" + table(header, rows)
    return section + ("\n\n" + "\n".join(errors) if errors else "")


def proxy_log_summary(log_paths: list[Path]) -> str:
    """Counts of the proxy's `stream.finished` outcomes and of any warnings or errors."""
    outcomes: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    other_lines = 0
    gc_lines: list[str] = []
    lines = [line for path in log_paths for line in path.read_text(errors="replace").splitlines()]
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            other_lines += 1
            continue
        levels[str(entry.get("level"))] += 1
        if entry.get("event") == "bench.gc":
            gc_lines.append(f"- GC ({entry['mode']}): collections per generation "
                            f"{entry['collections']}, CPU s {entry['cpu_s']}, longest pause "
                            f"ms {entry['max_pause_ms']}")  # fmt: skip
        elif entry.get("event") == "stream.finished":
            trial = str(entry.get("request_id", "")).startswith("disc-")
            kind = "disconnect trials" if trial else "other"
            outcomes[f"{kind}: {entry.get('outcome')}"] += 1
    rows = [[key, count] for key, count in sorted(outcomes.items())]
    rows += [[f"log lines at level {level}", count] for level, count in sorted(levels.items())]
    rows.append(["non-JSON lines", other_lines])
    title = f"### Proxy log ({len(log_paths)} proxy processes; stream.finished outcomes)"
    return title + "\n\n" + table(["what", "count"], rows) + "".join("\n" + g for g in gc_lines)
