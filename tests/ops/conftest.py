"""Fixtures for the operations tests: a private Redis that a test may stop."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.redis_servers import _start_node, _stop


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """``(port, process)`` of a redis-server only this test uses (stopping it is the point)."""
    port, proc = _start_node("redis-server", tmp_path / "redis")
    yield port, proc
    _stop(proc)
