"""The operator recipes of docs/redis-keys.md run as written, so they cannot rot.

Every block marked ``<!-- recipe: NAME -->`` in the doc is a ``console`` block: lines starting ``$ `` are
commands, the lines after one are its expected output. The test builds the scene the doc describes
(tests/ops/scene.py: a real worker on a private Redis), then runs each command in document order: ``redis-cli``
(the real binary, with ``-p <port> --no-raw`` added so the output is the formatted one an operator sees at
a terminal) and ``tidemq inspect`` (this checkout's ``python -m tidemq.cli`` with ``TIDEMQ_REDIS_URL``), and
matches the output against the block: ``<n>``, ``<ms>``, ``<iso>`` placeholders, ``…`` (a line of its own:
any lines; inside a line: any text), runs of spaces not significant.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.ops.scene import REPO, Scene, scene

pytestmark = pytest.mark.redis

DOC = REPO / "docs" / "redis-keys.md"
MARK = re.compile(r"<!-- recipe: ([\w-]+) -->\n```console\n(.*?)```", re.S)
PLACEHOLDERS = {"<n>": r"-?\d+", "<ms>": r"\d{13}", "<iso>": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"}
# the questions of the issue, each answered by a redis-cli recipe and a tidemq inspect recipe
EXPECTED = {"session-online", "session-offline", "inspect-session", "inbox", "inspect-inbox", "subscriptions",
            "routes", "inspect-routes", "retained", "inspect-retained", "settings", "inspect-settings",
            "settings-reset", "workers", "inspect-workers"}


@dataclass
class Step:
    recipe: str
    command: str
    expected: list[str]


def recipes() -> list[Step]:
    steps: list[Step] = []
    for name, body in MARK.findall(DOC.read_text()):
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            command, *expected = chunk.rstrip("\n").split("\n")
            steps.append(Step(name, command, expected))
    return steps


def line_pattern(line: str) -> str:
    out = ""
    for part in re.split(r"(<n>|<ms>|<iso>|…| {2,})", line):
        if part in PLACEHOLDERS:
            out += PLACEHOLDERS[part]
        elif part == "…":
            out += ".*"
        elif part and not part.strip(" "):
            out += " +"
        else:
            out += re.escape(part)
    return out


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    parts = ["(?:.*\n)*?" if line == "…" else line_pattern(line) + "\n" for line in expected]
    return re.compile("".join(parts))


def argv(command: str, sc: Scene) -> list[str]:
    words = shlex.split(command)
    if words[0] == "redis-cli":
        return [shutil.which("redis-cli") or "redis-cli", "-p", str(sc.port), "--no-raw", *words[1:]]
    assert words[:2] == ["tidemq", "inspect"], command
    return [sys.executable, "-m", "tidemq.cli", *words[1:]]


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    yield from scene(tmp_path_factory.mktemp("recipes"))


def test_the_doc_answers_every_question() -> None:
    names = {s.recipe for s in recipes()}
    assert names == EXPECTED


def test_pattern_matcher() -> None:
    pat = output_pattern(['1) "w-1"', "…", '2) "<ms>"', "x  <n>  …"])
    assert pat.fullmatch('1) "w-1"\nother\nlines\n2) "1796053681825"\nx 12      tail\n')
    assert not pat.fullmatch('1) "w-2"\n2) "1796053681825"\nx 1 y\n')


def test_recipes_run_as_documented(sc: Scene) -> None:
    env = {**os.environ, "TIDEMQ_REDIS_URL": sc.url}
    failures = []
    for step in recipes():
        proc = subprocess.run(argv(step.command, sc), capture_output=True, text=True, timeout=60, env=env,
                              cwd=REPO, check=False)
        out = proc.stdout if proc.stdout.endswith("\n") or not proc.stdout else proc.stdout + "\n"
        if proc.returncode != 0 or not output_pattern(step.expected).fullmatch(out):
            failures.append(f"[{step.recipe}] $ {step.command}\n--- expected\n" + "\n".join(step.expected)
                            + f"\n--- got (exit {proc.returncode})\n{out}{proc.stderr}")
    assert not failures, "\n\n".join(failures)
