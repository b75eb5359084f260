"""The Dockerfile, checked without a Docker engine.

The static part reads the Dockerfile: slim Python base, non-root numeric user,
``tidemq`` entry point running ``worker`` by default, the five ports exposed.
The install part replays the build stage on this machine: it copies what the
Dockerfile's ``COPY`` lines copy, installs it non-editable (``pip install
--no-deps --no-index``, offline) into a directory standing for site-packages,
and imports the installed package in a fresh interpreter: the Lua scripts must
be found there (the wheel ships top-level ``lua/`` as ``tidemq/lua``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, rest in _instructions():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, rest))
    return stages


def test_final_stage() -> None:
    final = _stages()[-1]
    ops: dict[str, list[str]] = {}
    for op, rest in final:
        ops.setdefault(op, []).append(rest)
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim", ops["FROM"][0])
    args = dict(rest.split("=", 1) for op, rest in _instructions() if op == "ARG" and "=" in rest)
    assert args["PYTHON_VERSION"] in ("3.11", "3.12")
    user = ops["USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "run as a numeric non-root uid (Kubernetes runAsNonRoot)"
    assert json.loads(ops["ENTRYPOINT"][-1]) == ["tidemq"]
    assert json.loads(ops["CMD"][-1]) == ["worker"]
    exposed = {int(p) for rest in ops["EXPOSE"] for p in rest.split()}
    assert exposed == {1883, 8883, 8080, 8443, 8091}


def test_build_installs_with_uvloop() -> None:
    runs = " ".join(rest for op, rest in _stages()[0] if op == "RUN")
    assert 'pip install ".[uvloop]"' in runs


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for src in _copied_sources():
        assert src.rstrip("/") not in ignored, src


def _copied_sources() -> list[str]:
    sources = []
    for op, rest in _stages()[0]:
        if op == "COPY" and not rest.startswith("--"):
            sources.extend(rest.split()[:-1])
    return sources


def test_installed_package_finds_its_lua_scripts(tmp_path: Path) -> None:
    src, site = tmp_path / "src", tmp_path / "site-packages"
    src.mkdir()
    for name in _copied_sources():
        path = ROOT / name.rstrip("/")
        if path.is_dir():
            shutil.copytree(path, src / path.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / path.name)
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), "."],
        cwd=src, capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.skip(f"cannot build the package offline here: {pip.stderr[-500:]}")
    probe = (
        "import json, tidemq.cli, tidemq.worker.broker, tidemq.api.server\n"
        "from tidemq.store import scripts\n"
        "print(json.dumps([scripts.__file__, str(scripts.LUA_DIR), sorted(scripts.SCRIPTS)]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMQ_")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    module, lua_dir, names = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(module).is_relative_to(site), f"imported {module}, not the installed copy"
    assert Path(lua_dir) == site / "tidemq" / "lua"  # shipped inside the wheel
    assert names == sorted(p.stem for p in (ROOT / "lua").glob("*.lua"))
