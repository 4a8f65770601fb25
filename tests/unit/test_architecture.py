"""The layout keeps its promises: the pure core imports no I/O, and every module stands alone.

Read from the source (imports found with `ast`, function bodies included), not from a running
interpreter, so an import that only happens on some path is seen too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "proxy"
PURE = "proxy.core"
# What the pure core must never reach, directly or through another module of ours.
IO_PACKAGES = frozenset({"aiohttp", "asyncio", "yaml", "redis", "uvloop", "structlog"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> Iterator[tuple[str, ast.stmt]]:
    """Every module an import statement in `path` names, with the statement."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node
            for alias in node.names:  # `from proxy.core import sse` imports a module too
                if f"{node.module}.{alias.name}" in MODULES:
                    yield f"{node.module}.{alias.name}", node


def with_parents(name: str) -> list[str]:
    """Importing a.b.c runs a, a.b and a.b.c."""
    parts = name.split(".")
    return [".".join(parts[: end + 1]) for end in range(len(parts))]


def reached(start: str) -> tuple[set[str], set[str]]:
    """The project's modules `start` imports directly or transitively, and every outside
    top-level package any of them imports."""
    ours: set[str] = set()
    outside: set[str] = set()
    todo = with_parents(start)
    while todo:
        name = todo.pop()
        if name in ours or name not in MODULES:
            continue
        ours.add(name)
        for target, _ in imported(MODULES[name]):
            if target.split(".")[0] == "proxy":
                todo.extend(with_parents(target))
            elif target != "__future__":
                outside.add(target.split(".")[0])
    return ours, outside


def test_the_pure_core_reaches_no_io_package() -> None:
    core = [name for name in MODULES if name == PURE or name.startswith(PURE + ".")]
    assert len(core) >= 10, core
    offenders = {}
    for name in core:
        ours, outside = reached(name)
        if outside & IO_PACKAGES:
            offenders[name] = sorted(outside & IO_PACKAGES)
        assert not any(module.startswith("proxy.") and not _pure_or_config(module)
                       for module in ours), (name, sorted(ours))  # fmt: skip
    assert offenders == {}


def _pure_or_config(module: str) -> bool:
    """The core may use the configuration's frozen objects and field checks, nothing else."""
    return module.startswith(PURE) or module in {"proxy", "proxy.config", "proxy.config.models",
                                                 "proxy.config.fields"}  # fmt: skip


def test_no_import_hides_inside_a_function() -> None:
    """A function-local import is how a cycle gets dodged; the layout has none to dodge."""
    hidden = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                hidden += [
                    f"{name}:{node.lineno}"
                    for node in ast.walk(function)
                    if isinstance(node, ast.Import | ast.ImportFrom)
                ]
    assert hidden == []


_IMPORT_EACH_ALONE = """
import importlib, sys
failures = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "proxy" or m.startswith("proxy.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failures))
"""


def test_every_module_imports_on_its_own() -> None:
    """Each module, imported first in a fresh set of the project's modules, loads: no import
    cycle depends on which module happens to be imported first."""
    names = [name for name in MODULES if not name.endswith("__main__")]
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_ALONE, *names],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == ""
