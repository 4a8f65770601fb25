"""The command line as a user runs it: real processes, real sockets on 127.0.0.1.

`python -m proxy` (and the `llm-stream-proxy` console script) with `--check-config`, with broken
configs, and serving for real in front of `python -m proxy.demo`: readiness, one streamed
request, JSON log lines on stdout, `--host/--port` overrides, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ports import unused_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "example.yaml"
DEMO = ROOT / "config" / "demo.yaml"
PYTHON = sys.executable
CONSOLE_SCRIPT = Path(sys.executable).parent / "llm-stream-proxy"
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "BOB_PROXY_KEY")
CANARIES = {
    "OPENAI_API_KEY": "sk-canary-OPENAI-4d7c2e9a1b",
    "ANTHROPIC_API_KEY": "sk-ant-canary-ANTHROPIC-8e3f6a0c5d",
    "BOB_PROXY_KEY": "pk-canary-BOB-2a9d7f1e6c",
}
RUN_TIMEOUT_S = 15
STARTUP_S = 10
STOP_S = 5
# urllib without any HTTP(S)_PROXY from the environment: these requests stay on 127.0.0.1.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- helpers -----------------------------------------------------------------------------------


def environment(**values: str) -> dict[str, str]:
    """This process's environment without any provider or user key, plus `values`."""
    env = {name: value for name, value in os.environ.items() if name not in KEY_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    return env | values


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def proxy_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "proxy", *args]


@contextmanager
def spawned(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A subprocess that is killed (and reaped) however the test ends."""
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=STOP_S)


def first_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The process's first stdout line, waiting at most `timeout_s`."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert readable, f"no output within {timeout_s} s"
    return process.stdout.readline().strip()


def start_demo(env: dict[str, str], token_delay_ms: int = 0) -> Iterator[str]:
    """Run the demo provider on a port of its choosing; yields its URL."""
    command = [PYTHON, "-m", "proxy.demo", "--host", "127.0.0.1", "--port", "0",
               "--token-delay-ms", str(token_delay_ms), "--first-token-delay-ms", "0"]  # fmt: skip
    with spawned(command, env) as demo:
        line = first_line(demo, STARTUP_S)
        prefix = "demo provider listening on "
        assert line.startswith(prefix + "http://127.0.0.1:"), line
        yield line.removeprefix(prefix)


@pytest.fixture
def demo_url() -> Iterator[str]:
    yield from start_demo(environment())


def wait_ready(process: subprocess.Popen[str], url: str) -> None:
    """Poll `/readyz` until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        assert process.poll() is None, f"proxy exited early: {process.communicate()}"
        try:
            with DIRECT.open(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet (or 503: not ready yet)
        assert time.monotonic() < deadline, f"{url}/readyz not ready within {STARTUP_S} s"
        time.sleep(0.02)


def post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with DIRECT.open(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def demo_config(tmp_path: Path, demo_url: str, edit: Callable[[str], str] = str) -> Path:
    """config/demo.yaml with every upstream pointed at `demo_url`, then `edit`ed."""
    text = DEMO.read_text(encoding="utf-8")
    assert text.count('"http://127.0.0.1:9100"') == 3
    path = tmp_path / "proxy.yaml"
    path.write_text(edit(text.replace("http://127.0.0.1:9100", demo_url)), encoding="utf-8")
    return path


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


# --- --check-config ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["module", "console-script"])
def test_check_config_accepts_the_example_with_its_keys_set(command: str) -> None:
    prefix = [str(CONSOLE_SCRIPT)] if command == "console-script" else proxy_command()
    result = run([*prefix, "--config", "config/example.yaml", "--check-config"],
                 environment(**CANARIES))  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config/example.yaml: OK (3 routes)"
    output = result.stdout + result.stderr
    assert not [value for value in CANARIES.values() if value in output]


def test_check_config_without_a_provider_key_names_its_key_path_and_no_key() -> None:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert document["routes"][2]["upstreams"][0]["api_key_env"] == "ANTHROPIC_API_KEY"
    present = {name: value for name, value in CANARIES.items() if name != "ANTHROPIC_API_KEY"}

    result = run(proxy_command("--config", str(EXAMPLE), "--check-config"), environment(**present))

    assert result.returncode == 1
    output = result.stdout + result.stderr
    problem = (
        "routes[2].upstreams[0].api_key_env: environment variable ANTHROPIC_API_KEY is not set"
    )
    assert problem in result.stderr
    assert not [value for value in CANARIES.values() if value in output]
    (logged,) = json_lines(result.stdout)
    assert logged["errors"] == [problem]
    assert logged["level"] == "error"


VALUE_CANARY = "canary-value-6b1f0e"
BROKEN_CONFIGS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # A key pasted into the file under a made-up name: refused, and never echoed.
    "unknown key": (
        lambda doc: doc["routes"][1]["upstreams"][0].update(api_key=VALUE_CANARY),
        "routes[1].upstreams[0].api_key: unknown key; did you mean 'api_key_env'?",
    ),
    "wrong type": (
        lambda doc: doc["defaults"].update(heartbeat_s=VALUE_CANARY),
        "defaults.heartbeat_s: must be a number, not a string",
    ),
    "port out of range": (
        lambda doc: doc["server"].update(port=65536),
        "server.port: must be at most 65535",
    ),
    "backlog beyond any kernel's": (
        lambda doc: doc["server"].update(listen_backlog=3_000_000_000),
        "server.listen_backlog: must be at most 65535",
    ),
}


@pytest.mark.parametrize("check_only", [True, False], ids=["check-config", "startup"])
@pytest.mark.parametrize("broken", list(BROKEN_CONFIGS))
def test_a_broken_config_exits_1_naming_the_key_path(
    tmp_path: Path, broken: str, check_only: bool
) -> None:
    document = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    spoil, problem = BROKEN_CONFIGS[broken]
    spoil(document)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    mode = ["--check-config"] if check_only else ["--port", str(unused_port())]

    # Startup must refuse before serving: a proxy that started would hit the run timeout.
    result = run(proxy_command("--config", str(path), *mode), environment())

    assert result.returncode == 1, result
    assert problem in result.stderr.splitlines()
    assert VALUE_CANARY not in result.stdout + result.stderr  # the value is never echoed
    (logged,) = json_lines(result.stdout)
    assert logged["errors"] == [problem]


PASTED_KEY = "Mq7xYv2LpR9sT4wZ8nB3kD6fH1jK5aQe"  # a key where a variable's name belongs


def test_a_key_pasted_where_a_variable_name_belongs_is_never_echoed(tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    document["routes"][1]["upstreams"][0]["api_key_env"] = PASTED_KEY
    document["auth"]["users"][1]["key_env"] = PASTED_KEY
    path = tmp_path / "pasted.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")

    result = run(proxy_command("--config", str(path), "--check-config"), environment(**CANARIES))

    assert result.returncode == 1
    assert PASTED_KEY not in result.stdout + result.stderr
    not_set = (
        "the environment variable named there is not set; the value there does not look like a "
        "variable name (upper-case letters, digits, '_') and may be a key pasted by mistake, so "
        "it is not shown"
    )
    problems = [
        f"auth.users[1].key_env: {not_set}",
        f"routes[1].upstreams[0].api_key_env: {not_set}",
    ]
    assert set(problems) <= set(result.stderr.splitlines())
    (logged,) = json_lines(result.stdout)
    assert logged["errors"] == problems


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_a_port_argument_out_of_range_is_a_usage_error(port: str) -> None:
    result = run(proxy_command("--config", str(DEMO), "--port", port), environment())

    assert result.returncode == 2, result
    assert "error: argument --port: must be a port number, 0..65535" in result.stderr
    assert "Traceback" not in result.stderr


# --- serving -----------------------------------------------------------------------------------


CHAT = {"model": "demo", "messages": [{"role": "user", "content": "Hello there"}]}


def test_proxy_process_streams_logs_json_and_stops_on_sigterm(
    tmp_path: Path, demo_url: str
) -> None:
    config = demo_config(
        tmp_path, demo_url, lambda text: text.replace("format: console", "format: json")
    )
    assert "port: 8080" in config.read_text(encoding="utf-8")  # overridden by --port below
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    command = proxy_command("--config", str(config), "--host", "127.0.0.1", "--port", str(port))

    with spawned(command, environment()) as proxy:
        wait_ready(proxy, url)
        status, headers, raw = post(url + "/v1/chat/completions", {**CHAT, "stream": True})
        _, _, whole = post(url + "/v1/chat/completions", CHAT)
        with DIRECT.open(url + "/healthz", timeout=5) as health:
            assert json.load(health) == {"status": "ok"}

        proxy.send_signal(signal.SIGTERM)
        stdout, stderr = proxy.communicate(timeout=STOP_S)  # raises if it takes longer
        assert proxy.returncode == 0, stderr

    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n")
    events = raw.removesuffix(b"\n\n").split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events), events
    chunks = [json.loads(event.removeprefix(b"data: ")) for event in events[:-1]]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert streamed == json.loads(whole)["choices"][0]["message"]["content"]
    assert "👋" in streamed  # multi-byte UTF-8 went through intact

    assert stderr == ""  # no warnings, no tracebacks
    lines = json_lines(stdout)  # every stdout line is a JSON object
    by_event = {line["event"]: line for line in lines}
    assert by_event["proxy.started"]["host"] == "127.0.0.1"
    assert by_event["proxy.started"]["port"] == port
    assert "proxy.stopping" in by_event
    finished = [line for line in lines if line["event"] == "stream.finished"]
    assert [(f["stream"], f["outcome"], f["status"]) for f in finished] == [
        (True, "completed", 200),
        (False, "completed", 200),
    ]
    assert {(f["route"], f["upstream"], f["user"]) for f in finished} == {
        ("openai", "demo", "anonymous")
    }
    assert finished[0]["output_tokens"] == len(chunks) - 2  # content chunks: no role, no finish
    assert finished[0]["tokens_source"] == "counted"
    assert all(line["level"] in {"info", "debug"} for line in lines), lines


@contextmanager
def listening_socket() -> Iterator[int]:
    """A port on 127.0.0.1 that this test holds (listening) until the block ends."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


TOO_LONG_LABEL = "x" * 64 + ".example"  # IDNA refuses labels over 63 characters
BAD_LABEL = "invalid host name (a label is empty or longer than 63 characters)"


@pytest.mark.parametrize(
    ("host", "reason"),
    [pytest.param("127.0.0.1", os.strerror(errno.EADDRINUSE), id="port-in-use"),
     pytest.param("192.0.2.1", os.strerror(errno.EADDRNOTAVAIL),
                  id="address-not-on-this-machine"),
     pytest.param(TOO_LONG_LABEL, BAD_LABEL, id="host-name-too-long")],
)  # fmt: skip
def test_a_failure_to_listen_is_one_clean_error_and_exit_1(
    tmp_path: Path, host: str, reason: str
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(DEMO.read_text(encoding="utf-8").replace("format: console", "format: json"))
    with listening_socket() as port:
        command = proxy_command("--config", str(config), "--host", host, "--port", str(port))
        result = run(command, environment())  # a proxy that started would hit the run timeout

    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [f"cannot listen on {host}:{port}: {reason}"]
    (logged,) = json_lines(result.stdout)
    assert (logged["event"], logged["level"]) == ("server.listen_failed", "error")
    assert (logged["host"], logged["port"], logged["error"]) == (host, port, reason)


def test_console_format_from_demo_yaml_is_not_json(tmp_path: Path, demo_url: str) -> None:
    config = demo_config(tmp_path, demo_url)
    port = unused_port()
    url = f"http://127.0.0.1:{port}"

    with spawned(
        proxy_command("--config", str(config), "--port", str(port)), environment()
    ) as proxy:
        wait_ready(proxy, url)
        status, _, raw = post(url + "/v1/messages", {**CHAT, "max_tokens": 5, "stream": True})
        proxy.send_signal(signal.SIGTERM)
        stdout, stderr = proxy.communicate(timeout=STOP_S)
        assert proxy.returncode == 0, stderr

    assert status == 200
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert any("proxy.started" in line for line in lines)
    assert any("stream.finished" in line and "route=anthropic" in line for line in lines)
    assert not [line for line in lines if line.startswith("{")]


def read_until_logged(process: subprocess.Popen[str], event: str) -> None:
    """Read the process's JSON log lines until one with `event`."""
    while True:
        line = first_line(process, STOP_S)
        assert line, f"the process ended before logging {event}"
        if json.loads(line).get("event") == event:
            return


def test_a_second_signal_during_the_grace_period_does_not_cut_open_streams(
    tmp_path: Path,
) -> None:
    with contextlib.contextmanager(start_demo)(environment(), 40) as slow_demo:
        config = demo_config(
            tmp_path, slow_demo, lambda text: text.replace("format: console", "format: json")
        )
        port = unused_port()
        url = f"http://127.0.0.1:{port}"
        with spawned(proxy_command("--config", str(config), "--port", str(port)),
                     environment()) as proxy:  # fmt: skip
            wait_ready(proxy, url)
            request = urllib.request.Request(
                url + "/v1/chat/completions",
                data=json.dumps({**CHAT, "stream": True}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with DIRECT.open(request, timeout=10) as stream:
                first = stream.readline()  # streaming now, for about a second more
                proxy.send_signal(signal.SIGTERM)
                read_until_logged(proxy, "proxy.stopping")
                proxy.send_signal(signal.SIGTERM)  # impatient operator, or a second docker stop
                rest = stream.read()
            proxy.communicate(timeout=STOP_S)

    assert (first + rest).endswith(b"data: [DONE]\n\n")
    assert rest.count(b'"content"') >= 10  # most of the stream came after the second signal
    assert proxy.returncode == 0


def test_during_the_shutdown_delay_readyz_says_503_and_requests_are_still_served(
    tmp_path: Path, demo_url: str
) -> None:
    def edit(text: str) -> str:
        text = text.replace("format: console", "format: json")
        return text.replace("server:\n", "server:\n  shutdown_delay_s: 30\n", 1)

    config = demo_config(tmp_path, demo_url, edit)
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    with spawned(proxy_command("--config", str(config), "--port", str(port)),
                 environment()) as proxy:  # fmt: skip
        wait_ready(proxy, url)
        proxy.send_signal(signal.SIGTERM)
        read_until_logged(proxy, "proxy.stopping")

        with pytest.raises(urllib.error.HTTPError) as not_ready:
            DIRECT.open(url + "/readyz", timeout=5)
        status, _, raw = post(url + "/v1/chat/completions", {**CHAT, "stream": True})
        assert proxy.poll() is None  # still there: the delay has most of its 30 s to go
        proxy.kill()

    assert not_ready.value.code == 503
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
