"""docs/configuration.md is generated from Settings and .env.example (scripts/gen_config_docs.py): in sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tidemq.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_in_sync() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for name in Settings.env_names():
        assert f"| `{name}` |" in text, name
