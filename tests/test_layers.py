"""Layer rules held as tests, so a wrong import fails the build instead of surviving review.

- The sans-IO protocol code (codec, properties, topics, the session state machine, the
  trie) imports no asyncio, socket, time, redis or sanic — what makes it testable and fuzzable.
- ``app/`` (HTTP) and ``workers/`` (MQTT) never import each other; both use the shared core.
- Redis key names are built in ``tidemq/store/keys.py`` only (no ``"tidemq:`` literal elsewhere
  in product code), and Lua scripts receive every key in KEYS.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SANS_IO = sorted([*(ROOT / "tidemq" / "mqtt").glob("*.py"), *(ROOT / "tidemq" / "routing").glob("*.py")])
KEY = re.compile(r"^tidemq:[a-z]")  # a key or channel name ("tidemq: message" is prose)
FORBIDDEN_IN_SANS_IO = {"asyncio", "socket", "time", "redis", "sanic", "uvloop", "fakeredis", "selectors"}


def imports(path: Path) -> set[str]:
    """Top-level module names imported by ``path`` (absolute imports only; relative ones stay inside)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def product_files(*parts: str) -> list[Path]:
    return sorted(p for p in (ROOT.joinpath(*parts)).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: p.name)
def test_sans_io_modules_do_no_io(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] in FORBIDDEN_IN_SANS_IO}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def _names(module: str, service: str) -> bool:
    """``module`` is the service's code under its folder name or its installed name (tidemq.api/.worker)."""
    installed = {"app": "tidemq.api", "workers": "tidemq.worker"}[service]
    return module.split(".")[0] == service or module == installed or module.startswith(installed + ".")


def test_app_and_workers_never_import_each_other() -> None:
    for path in product_files("app"):
        assert not {m for m in imports(path) if _names(m, "workers")}, path
    for path in product_files("workers"):
        assert not {m for m in imports(path) if _names(m, "app")}, path


def test_services_import_themselves_relatively() -> None:
    """Inside app/ and workers/, own modules are imported relatively: the folder name is not the installed name."""
    for service in ("app", "workers"):
        for path in product_files(service):
            assert not {m for m in imports(path) if _names(m, service)}, path


def test_core_imports_neither_service() -> None:
    for path in product_files("tidemq"):
        if path.name == "cli.py":  # the command line composes the services
            continue
        bad = {m for m in imports(path) if _names(m, "app") or _names(m, "workers")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_key_names_are_built_in_keys_py_only() -> None:
    offenders = []
    for base in ("tidemq", "app", "workers"):
        for path in product_files(base):
            if path == ROOT / "tidemq" / "store" / "keys.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY.match(node.value):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
