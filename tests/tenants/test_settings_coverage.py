"""docs/settings.md's table against the code: every setting listed, BifroMQ's defaults, and each one read.

The table is parsed (first column: the BifroMQ name in backticks; third: BifroMQ's default). It must list
exactly the settings of ``tidemq.tenants.SPECS``; a BifroMQ default must equal ``TenantSettings()``'s value
unless it is one of TideMQ's documented departures (``ByPassPermCheckError``) or a resource-throttler
stand-in; and every setting must be read by the product code (``tidemq/``, ``workers/``, ``app/``, outside
``tidemq/tenants.py``, as ``.<TenantSettings attribute>``) unless its row says **not enforced** — and a row
that says so must really be read nowhere, so implementing one fails this test until the table is updated.
"""

from __future__ import annotations

import re
from pathlib import Path

from tidemq.tenants import SPECS, TenantSettings, format_value

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"
DEPARTURES = {"ByPassPermCheckError"}  # BifroMQ's default differs on purpose (docs/settings.md says why)
# read through a TenantSettings method rather than the attribute
READ_THROUGH = {"mqtt3_enabled": "protocol_enabled", "mqtt4_enabled": "protocol_enabled",
                "mqtt5_enabled": "protocol_enabled"}
_ROW = re.compile(r"^\| `(?P<name>[A-Za-z0-9]+)` \| [^|]+ \| (?P<bifromq>[^|]*) \|(?P<rest>.*)\|$")


def _table() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    in_settings = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            in_settings = line.strip() == "## Settings"
        m = _ROW.match(line) if in_settings else None
        if m:
            assert m["name"] not in rows, f"{m['name']} listed twice"
            rows[m["name"]] = (m["bifromq"].strip(), m["rest"])
    return rows


def _product_code() -> str:
    files = [p for d in ("tidemq", "workers", "app") for p in sorted((ROOT / d).rglob("*.py"))
             if p != ROOT / "tidemq" / "tenants.py"]
    return "\n".join(p.read_text() for p in files)


def test_table_lists_exactly_the_settings() -> None:
    assert set(_table()) == set(SPECS)


def test_bifromq_defaults_match_tenant_settings() -> None:
    base = TenantSettings()
    for name, (bifromq, _rest) in _table().items():
        if bifromq.startswith("(") or name in DEPARTURES:  # a throttler stand-in, or a documented departure
            continue
        assert bifromq == format_value(getattr(base, SPECS[name].field)), name
    assert _table()["ByPassPermCheckError"][0] == "true" and base.by_pass_perm_check_error is False


def test_every_setting_is_read_or_marked_not_enforced() -> None:
    code = _product_code()
    unread, marked = set(), set()
    for name, (_bifromq, rest) in _table().items():
        field = SPECS[name].field
        reader = READ_THROUGH.get(field, field)
        if not re.search(rf"\.{reader}\b", code):
            unread.add(name)
        if "**not enforced**" in rest:
            marked.add(name)
    assert unread - marked == set(), f"listed but read by no code: {sorted(unread - marked)}"
    assert marked - unread == set(), f"marked not enforced but read: {sorted(marked - unread)} (update the doc)"
