"""The chart's optional Grafana dashboard ConfigMap: off by default; on, it carries dashboards/tidemq.json
(byte for byte) with the ``grafana_dashboard: "1"`` label Grafana's sidecar looks for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.test_chart import CHART, DEV, render

helm = pytest.importorskip("helm_python")


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def _dashboards(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"]


def test_dashboard_configmap_is_optional_and_carries_the_json(chart: Any) -> None:
    assert _dashboards(render(chart, DEV)) == []
    (cm,) = _dashboards(render(chart, {**DEV, "grafanaDashboard": {"enabled": True}}))
    assert json.loads(cm["data"]["tidemq.json"]) == json.loads((CHART / "dashboards" / "tidemq.json").read_text())
