"""The demo's child processes: started, their output copied to a log file and kept, and their
own word taken for when (and where) they listen.

A child is ready when a line of its stdout matches its ready pattern (the line in which it names
the port it bound), not when something answers on a port: another program may be listening
there. `Child.started` returns that line, or None once the child has exited without it, with
all of its output read (so the caller can print the child's own error).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

STOP_S = 10  # after SIGTERM, how long a child gets before it is killed
LINE_LIMIT = 1024 * 1024  # the longest output line read whole (asyncio's default: 64 KiB)


class Child:
    """One child process of the demo, its output going to `log_path` and kept in memory."""

    def __init__(
        self, name: str, process: asyncio.subprocess.Process, log: TextIO, ready: re.Pattern[str]
    ) -> None:
        self.name, self.process, self._log, self._pattern = name, process, log, ready
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Condition()
        assert process.stdout is not None and process.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(process.stdout, self.stdout)),
            asyncio.create_task(self._pump(process.stderr, self.stderr)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, lines: list[str]) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self._log.write(line + "\n")
            self._log.flush()
            lines.append(line)
            if lines is self.stdout and not self._ready.done() and self._pattern.search(line):
                self._ready.set_result(line)
            async with self._changed:
                self._changed.notify_all()

    async def started(self, timeout_s: float) -> str | None:
        """The child's ready line; None if it exited first. TimeoutError if it says neither."""
        exited = asyncio.create_task(self.process.wait())
        either: set[asyncio.Future[Any]] = {self._ready, exited}
        try:
            await asyncio.wait(either, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if self._ready.done():
            return self._ready.result()
        if self.process.returncode is None:
            raise TimeoutError(f"the {self.name} did not say it was listening in {timeout_s:g} s")
        await asyncio.gather(*self._pumps)  # the pipes are closed: all of its output is read
        return None

    async def wait_for_output(self, done: Callable[[list[str]], bool], timeout_s: float) -> bool:
        """Whether `done(stdout lines)` became true within `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: done(self.stdout))
        return done(self.stdout)

    def failure(self) -> str:
        """What the child said before it exited (stderr; else the end of its stdout)."""
        status = self.process.returncode
        said = self.stderr or self.stdout[-20:] or ["(no output)"]
        lines = "\n".join(f"  {line}" for line in said)
        return f"the {self.name} exited with status {status}:\n{lines}"

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after `STOP_S`; its output is read to the end."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.gather(*self._pumps)
        self._log.close()


async def spawn(name: str, command: Sequence[str], log_path: Path, ready: re.Pattern[str]) -> Child:
    """Start `command`, its stdout and stderr appended to `log_path`."""
    log = log_path.open("a", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        limit=LINE_LIMIT,
    )
    return Child(name, process, log, ready)
