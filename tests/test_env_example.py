"""`.env.example` lists every Settings field exactly once, with its real default.

Each ``TIDEMQ_<NAME>=<value>`` line must name a field of ``tidemq.config.Settings``
and its value must parse (through ``Settings.from_env``) back to the dataclass
default; a field added to Settings without a line here fails this test.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from tidemq.config import ENV_PREFIX, Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def _entries() -> list[tuple[str, str]]:
    out = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"not NAME=value: {line!r}"
        out.append((name.strip(), value.strip()))
    return out


def test_names_match_settings() -> None:
    names = [name for name, _ in _entries()]
    assert len(names) == len(set(names)), "duplicate names in .env.example"
    assert set(names) == set(Settings.env_names())


def test_every_field_has_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(ENV_PREFIX):
            assert i > 0 and lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_defaults_parse_back_to_dataclass_defaults() -> None:
    env = dict(_entries())
    parsed = Settings.from_env(env)
    default = Settings()
    for f in fields(Settings):
        assert getattr(parsed, f.name) == getattr(default, f.name), f.name
        assert type(getattr(parsed, f.name)) is type(getattr(default, f.name)), f.name
