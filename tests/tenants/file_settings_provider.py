"""A test settings provider (``TIDEMQ_SETTINGS_PROVIDER=tests.tenants.file_settings_provider:FileSettings``).

Reads ``{tenant: {BifroMQ name: value}}`` from the JSON file named by ``TIDEMQ_TEST_SETTINGS_FILE`` on every
read (a stand-in for a config service), and never looks at Redis: a process using it ignores the tenants'
Redis hashes. A tenant named ``broken...`` makes the read raise (the provider is down).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tidemq.config import Settings


class FileSettings:
    def __init__(self, settings: Settings, redis: Any) -> None:
        self.path = Path(os.environ["TIDEMQ_TEST_SETTINGS_FILE"])

    async def read(self, tenant: str) -> Mapping[str, Any]:
        if tenant.startswith("broken"):
            raise RuntimeError("settings service unreachable")
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        values = data.get(tenant, {})
        return values if isinstance(values, dict) else {}

    def describe(self, tenant: str) -> str:
        return f"{self.path} [{tenant}]"
