"""The Dockerfile, checked without a Docker engine.

The static part reads the Dockerfile: slim Python base, non-root numeric user,
``tidemq`` entry point running ``worker`` by default, the six ports exposed, the
worker health port on. The HEALTHCHECK command is run against a live standalone
broker, once as a worker would run it and once as an API node would.
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
    assert exposed == {1883, 8883, 8080, 8443, 8091, 8092}
    env = " ".join(ops["ENV"])
    assert "TIDEMQ_HEALTH_PORT=8092" in env, "the worker health port is on in the image"
    assert len(ops["HEALTHCHECK"]) == 1


def test_build_installs_without_extras() -> None:
    runs = " ".join(rest for op, rest in _stages()[0] if op == "RUN")
    assert "pip install . " in runs  # uvloop comes with Sanic on Linux: no extra
    assert "uvloop" not in DOCKERFILE.read_text()


def _healthcheck_argv() -> list[str]:
    (rest,) = [rest for op, rest in _stages()[-1] if op == "HEALTHCHECK"]
    options, _, command = rest.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv: list[str] = json.loads(command)
    assert argv[0] == "python"  # the image has no curl; its python is first on PATH
    return [sys.executable, *argv[1:]]


def _run_healthcheck(cmdline_file: Path, env: dict[str, str]) -> int:
    argv = _healthcheck_argv()
    assert "/proc/1/cmdline" in argv[-1]
    argv[-1] = argv[-1].replace("/proc/1/cmdline", str(cmdline_file))
    base = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMQ_")}
    return subprocess.run(argv, env={**base, **env}, capture_output=True, timeout=30).returncode


def test_healthcheck_probes_the_running_command(tmp_path: Path) -> None:
    """The HEALTHCHECK command against a live standalone, as the worker (health port) and as the API."""
    from tests.fixtures.brokers import free_port, standalone_process

    health = free_port()
    proc = standalone_process(tmp_path, env={"TIDEMQ_HEALTH_PORT": str(health)}).start()
    try:
        assert proc.pid is not None and proc.api_port is not None
        env = {"TIDEMQ_HEALTH_PORT": str(health), "TIDEMQ_API_PORT": str(proc.api_port)}
        own = Path(f"/proc/{proc.pid}/cmdline")  # python -m tidemq.cli standalone ...: the health port
        assert _run_healthcheck(own, env) == 0
        api = tmp_path / "api-cmdline"  # as PID 1 of `docker run tidemq api` looks
        api.write_bytes(b"/opt/tidemq/bin/python\0/opt/tidemq/bin/tidemq\0api\0--host\x000.0.0.0\0")
        assert _run_healthcheck(api, env) == 0
        assert _run_healthcheck(api, {**env, "TIDEMQ_API_PORT": str(free_port())}) != 0  # nothing there
        assert _run_healthcheck(own, {**env, "TIDEMQ_HEALTH_PORT": str(free_port())}) != 0
    finally:
        proc.stop()


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
