"""`--log-format` and where a config error goes: a person at a terminal gets the list of problems
only; a log collector (stdout not a terminal, or `--log-format json`) also gets the one
`config.invalid` JSON line. Real processes; the terminal is a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.yaml"
TIMEOUT_S = 15
PROBLEM = "server.prot: unknown key; did you mean 'port'?"


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def broken_config(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(DEMO.read_text(encoding="utf-8").replace("  port: 8080", "  prot: 8080"))
    return path


def proxy(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", *args]


def read_terminal(leader: int) -> str:
    """Everything the process wrote to the terminal (it has exited and the follower is closed)."""
    chunks = []
    while select.select([leader], [], [], TIMEOUT_S)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def on_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run with stdout on a pseudo-terminal: (exit status, terminal text, stderr)."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            args, cwd=ROOT, env=environment(), stdout=follower, stderr=subprocess.PIPE,
            text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
    finally:
        os.close(follower)
    try:
        return result.returncode, read_terminal(leader), result.stderr
    finally:
        os.close(leader)


def piped(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=TIMEOUT_S
    )


def config_invalid_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "config.invalid"]


@pytest.mark.parametrize("check_only", [True, False], ids=["check-config", "startup"])
def test_in_a_terminal_a_config_error_is_the_list_only(tmp_path: Path, check_only: bool) -> None:
    mode = ["--check-config"] if check_only else ["--port", "0"]
    status, terminal, stderr = on_terminal(proxy("--config", str(broken_config(tmp_path)), *mode))

    assert status == 1
    assert terminal == ""
    assert stderr.splitlines() == [f"{tmp_path / 'broken.yaml'}: invalid configuration:", PROBLEM]


def test_in_a_terminal_log_format_json_adds_the_config_invalid_line(tmp_path: Path) -> None:
    config = broken_config(tmp_path)
    status, terminal, stderr = on_terminal(
        proxy("--config", str(config), "--check-config", "--log-format", "json")
    )

    assert status == 1
    (logged,) = config_invalid_lines(terminal)
    assert (logged["level"], logged["path"], logged["errors"]) == ("error", str(config), [PROBLEM])
    assert PROBLEM in stderr.splitlines()


@pytest.mark.parametrize(
    ("flag", "logged"), [([], 1), (["--log-format", "json"], 1), (["--log-format", "console"], 0)]
)
def test_on_a_pipe_the_line_is_there_unless_console_is_asked_for(
    tmp_path: Path, flag: list[str], logged: int
) -> None:
    result = piped(proxy("--config", str(broken_config(tmp_path)), "--check-config", *flag))

    assert result.returncode == 1
    assert len(config_invalid_lines(result.stdout)) == logged
    assert len(result.stdout.splitlines()) == logged  # that line or nothing
    assert PROBLEM in result.stderr.splitlines()


def test_a_valid_config_in_a_terminal_says_ok() -> None:
    status, terminal, _ = on_terminal(proxy("--config", str(DEMO), "--check-config"))
    assert (status, terminal) == (0, f"{DEMO}: OK (3 routes)\n")


@pytest.mark.parametrize(
    ("file_format", "flag", "json_lines"),
    [("console", "json", True), ("json", "console", False)],
    ids=["console-file-json-flag", "json-file-console-flag"],
)
def test_log_format_overrides_the_files_logging_format(
    tmp_path: Path, file_format: str, flag: str, json_lines: bool
) -> None:
    config = tmp_path / "proxy.yaml"
    text = DEMO.read_text(encoding="utf-8")
    config.write_text(text.replace("format: console", f"format: {file_format}"))
    command = proxy("--config", str(config), "--port", "0", "--log-format", flag)
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], TIMEOUT_S)[0], "no log line"
        started = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert "proxy.started" in started
    assert started.startswith("{") == json_lines
    if json_lines:
        assert json.loads(started)["event"] == "proxy.started"


def test_an_unknown_log_format_is_a_usage_error() -> None:
    result = piped(proxy("--config", str(DEMO), "--log-format", "text"))
    assert result.returncode == 2
    assert "--log-format: invalid choice: 'text'" in result.stderr
