"""Child processes (the proxy, the upstream), their config, and what /proc says about them."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import yaml

NOFILE_TARGET = 65536
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
INPROC_MODEL = "inproc-model"


def raise_nofile_limit(target: int = NOFILE_TARGET) -> int:
    """Raise RLIMIT_NOFILE towards `target` (the hard limit too, when allowed); return soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(target, soft), max(target, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _child_limits() -> None:
    """preexec_fn: give each child the same high descriptor limit."""
    raise_nofile_limit()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _route(name: str, url: str, paths: list[str], provider: str) -> dict[str, object]:
    return {"name": name, "paths": paths, "provider": provider,
            "upstreams": [{"name": name + "-up", "url": url}]}  # fmt: skip


def write_config(
    directory: Path, port: int, upstream_url: str, inproc_url: str, heartbeat_s: float
) -> Path:
    """The proxy's YAML: no auth, generous limits; model `inproc-model` goes to `inproc_url`."""
    chat = ["/v1/chat/completions", "/v1/completions", "/v1/responses"]
    inproc = _route("inproc", inproc_url, ["/v1/chat/completions"], "openai")
    inproc["models"] = [INPROC_MODEL]
    document = {
        "server": {"host": "127.0.0.1", "port": port, "max_upstream_connections": 4096},
        "logging": {"level": "info", "format": "json"},
        "defaults": {
            "heartbeat_s": heartbeat_s,
            "timeouts": {"connect_s": 10, "first_byte_s": 120, "idle_s": 300,
                         "max_stream_s": 1800, "client_stall_s": 120},
            "max_concurrent_streams_per_user": 100000,
        },
        "auth": {"mode": "none"},
        "routes": [
            inproc,
            _route("openai", upstream_url, chat, "openai"),
            _route("anthropic", upstream_url, ["/v1/messages"], "anthropic"),
        ],
    }  # fmt: skip
    path = directory / "proxy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class Child:
    """A child process whose stdout and stderr go to one log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        self.log_file.close()
        return self.process.returncode


def start_child(name: str, args: list[str], directory: Path) -> Child:
    log_path = directory / f"{name}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, *args], stdout=log_file, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, preexec_fn=_child_limits, cwd=Path.cwd(),
    )  # fmt: skip
    return Child(name, process, log_path, log_file)


async def wait_ready(child: Child, url: str, timeout_s: float = 20.0) -> None:
    """Poll `url` until it answers 200; fail early if the child died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited: see {child.log_path}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready at {url} within {timeout_s:g} s")


def cpu_times(pid: int | str = "self") -> tuple[float, float]:
    """(utime, stime) of a process in seconds, from /proc/<pid>/stat (clock-tick resolution)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS  # stat(5) fields 14, 15


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process."""
    return sum(cpu_times(pid))


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of a process in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


TCP_COUNTERS = (
    "TcpExt:ListenOverflows", "TcpExt:ListenDrops", "TcpExt:TCPAbortOnData",
    "TcpExt:TCPAbortOnClose", "TcpExt:SyncookiesSent", "TcpExt:TCPReqQFullDrop",
    "Tcp:OutRsts", "Tcp:EstabResets", "Tcp:AttemptFails",
)  # fmt: skip


def tcp_counters() -> dict[str, int]:
    """Machine-wide TCP counters (/proc/net/netstat, /proc/net/snmp) that show drops/resets."""
    values: dict[str, int] = {}
    for name in ("/proc/net/netstat", "/proc/net/snmp"):
        lines = Path(name).read_text().splitlines()
        for header, row in zip(lines[0::2], lines[1::2], strict=False):
            keys, numbers = header.split(), row.split()
            for key, number in zip(keys[1:], numbers[1:], strict=False):
                if keys[0] + key in TCP_COUNTERS:
                    values[keys[0] + key] = int(number)
    return values


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that moved."""
    moved = {key: after[key] - before.get(key, 0) for key in after}
    return {key.split(":", 1)[1]: delta for key, delta in moved.items() if delta}


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds (user + system) of the three processes; the proxy's also split."""

    proxy_user: float
    proxy_system: float
    upstream: float
    bench: float

    @property
    def proxy(self) -> float:
        return self.proxy_user + self.proxy_system

    @classmethod
    def take(cls, proxy_pid: int, upstream_pid: int) -> CpuSnapshot:
        user, system = cpu_times(proxy_pid)
        return cls(user, system, cpu_seconds(upstream_pid), cpu_seconds())

    def __sub__(self, earlier: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(
            self.proxy_user - earlier.proxy_user,
            self.proxy_system - earlier.proxy_system,
            self.upstream - earlier.upstream,
            self.bench - earlier.bench,
        )


def machine_description() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    kernel = os.uname().release
    python = sys.version.split()[0]
    return f"{os.cpu_count()} CPUs ({model}), {pages / 2**30:.1f} GiB RAM, Linux {kernel}, " + (
        f"Python {python}, aiohttp {aiohttp.__version__}"
    )
