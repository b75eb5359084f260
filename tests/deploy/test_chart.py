"""Offline checks of the Helm chart in ``helm/tidemq``: render, lint, schema, Kubernetes validity.

The chart is rendered and linted by the Helm engine bundled in ``helm-python-sdk``
(no ``helm`` binary, no cluster, no network) for the default values, for
``ci/tls-cluster-values.yaml`` (TLS, Redis Cluster, 3 workers) and for a few
inline variants; every rendered object is validated with
``kubernetes-validate --strict`` against the oldest Kubernetes the chart
supports and the newest the package knows. The optional ServiceMonitors
(a CRD kubernetes-validate does not know) are checked structurally: what they select and scrape
exists. The chart and ``Settings`` are kept in
step: every ``TIDEMQ_*`` variable the chart sets is a Settings field, and every
Settings field can be set through the chart. Without those two packages the
tests skip.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from tidemq.config import ENV_PREFIX, Settings

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
try:
    import helm_python as helm
except (ImportError, OSError) as exc:  # OSError: the bundled libhelm_c cannot load here
    pytest.skip(f"helm-python-sdk not usable: {exc}", allow_module_level=True)

CHART = Path(__file__).resolve().parents[2] / "helm" / "tidemq"
CI_VALUES = CHART / "ci" / "tls-cluster-values.yaml"
RELEASE, NAMESPACE = "mq", "tidemq"
FULLNAME = f"{RELEASE}-tidemq"
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
# Settings the chart deliberately never sets, with the reason
NOT_SET = {
    "TIDEMQ_WORKER_ID": "a fixed id shared by replicas (or reused after a crash) would confuse session ownership",
    "TIDEMQ_REDIS_PASSWORD": "secret: the chart keeps the password in the Redis URL Secret",
    "TIDEMQ_TLS_KEY_PASSWORD": "secret: the chart's TLS Secret holds an unencrypted key",
}


def _ci_values() -> dict[str, Any]:
    return yaml.safe_load(CI_VALUES.read_text())


# the default values use the devonly provider and no admin token: they render only with the opt-in
DEV = {"config": {"allowInsecure": True}}
SECURED = {"config": {"authProvider": "file", "authFile": "/etc/tidemq/auth/users.json"}, "api": {"token": "t"}}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": DEV,
    "tls-cluster": _ci_values(),
    "autoscaled": {"workers": {"autoscaling": {"enabled": True}}, **SECURED},
    "workers-only": {"api": {"enabled": False}, "redis": {"url": "rediss://:pw@redis:6380/2"},
                     "listeners": {"ws": {"enabled": True}},
                     "config": {"authProvider": "webhook", "authWebhookUrl": "http://auth:8080/mqtt",
                                "wsAllowedOrigins": "https://app.example.com", "wsRequireSubprotocol": True},
                     "workers": {"service": {"type": "LoadBalancer"}, "podDisruptionBudget": {"enabled": False}}},
    "existing-secrets": {"listeners": {"tls": {"enabled": True}},
                         "tls": {"existingSecret": "mqtt-cert", "existingSecretCAKey": "ca.crt"},
                         "api": {"existingSecret": "admin", "existingSecretKey": "token"},
                         "config": {"authProvider": "file", "authFile": "/a.json", "apiTokenFile": "/t/tokens"}},
    "monitored": {**SECURED, "listeners": {"ws": {"enabled": True}},
                  "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                  "networkPolicy": {"enabled": True,
                                    "mqttFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                                    "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                                        "kubernetes.io/metadata.name": "monitoring"}}}]}},
}
# custom resources kubernetes-validate has no schema for: checked by their own tests below
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (NOTES.txt and empty documents left out)."""
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return objects_of(out)


def notes(chart: Any, values: dict[str, Any]) -> str:
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    (text,) = [t for p, t in out.items() if p.endswith("NOTES.txt")]
    return str(text)


def objects_of(out: dict[str, str]) -> list[dict[str, Any]]:
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} {name} in {[(o['kind'], o['metadata']['name']) for o in objects]}")


def container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    deployment = find(objects, "Deployment", f"{FULLNAME}-{component}")
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_names(objects: list[dict[str, Any]]) -> set[str]:
    """Every TIDEMQ_* name the rendered objects put in a container's environment."""
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    names: set[str] = set()
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for c in obj["spec"]["template"]["spec"]["containers"]:
            names.update(e["name"] for e in c.get("env", []))
            for source in c.get("envFrom", []):
                names.update(configmaps[source["configMapRef"]["name"]]["data"])
    return {n for n in names if n.startswith(ENV_PREFIX)}


# ------------------------------------------------------------------ render, lint, validate


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_lint_is_clean(case: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[case], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert problems == []


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_objects_are_valid_kubernetes(chart: Any, case: str, kube_version: str) -> None:
    objects = render(chart, VALUE_SETS[case])
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {kube_version}): {exc.message}")


def test_default_objects(chart: Any) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in render(chart, DEV))
    assert kinds == sorted([
        ("ConfigMap", FULLNAME),
        ("Secret", FULLNAME),
        ("ServiceAccount", FULLNAME),
        ("Deployment", f"{FULLNAME}-worker"),
        ("Deployment", f"{FULLNAME}-api"),
        ("Service", f"{FULLNAME}-mqtt"),
        ("Service", f"{FULLNAME}-api"),
        ("PodDisruptionBudget", f"{FULLNAME}-worker"),
        ("PodDisruptionBudget", f"{FULLNAME}-api"),
    ])


# ------------------------------------------------------------------ the chart and Settings


def test_every_env_var_is_a_settings_field(chart: Any) -> None:
    known = set(Settings.env_names())
    for case, values in VALUE_SETS.items():
        unknown = env_names(render(chart, values)) - known
        assert not unknown, f"{case}: the chart sets variables Settings does not read: {sorted(unknown)}"


def test_every_settings_field_can_be_set(chart: Any) -> None:
    covered: set[str] = set()
    for values in VALUE_SETS.values():
        covered |= env_names(render(chart, values))
    missing = set(Settings.env_names()) - covered - set(NOT_SET)
    assert not missing, f"Settings fields the chart cannot set (add them to values.yaml config): {sorted(missing)}"
    assert not covered & set(NOT_SET)


# values.yaml differs from the Settings defaults here, on purpose: pods must listen on their pod address
CHART_SETS = {"host": "0.0.0.0"}


def test_default_config_is_the_settings_defaults(chart: Any) -> None:
    """values.yaml repeats the Settings defaults (and so .env.example), but for the Redis URL and the host."""
    configmap = find(render(chart, DEV), "ConfigMap", FULLNAME)
    parsed = Settings.from_env({k: v for k, v in configmap["data"].items() if k != "TIDEMQ_ALLOW_INSECURE"})
    default = Settings()
    for f in fields(Settings):
        if ENV_PREFIX + f.name.upper() in configmap["data"]:
            assert getattr(parsed, f.name) == CHART_SETS.get(f.name, getattr(default, f.name)), f.name


def test_config_values_reach_the_environment(chart: Any) -> None:
    objects = render(chart, VALUE_SETS["tls-cluster"])
    data = find(objects, "ConfigMap", FULLNAME)["data"]
    settings = Settings.from_env(data)
    assert settings.max_inflight == 64
    assert settings.max_session_expiry == 604800
    assert settings.max_packet_size == 268435460  # a big whole number stays a plain integer
    assert settings.sweep_interval == 2.5
    assert settings.max_connect_rate == 500.5
    assert settings.log_json == "true"
    assert settings.auth_provider == "file"
    assert data["TIDEMQ_MAX_PACKET_SIZE"] == "268435460"


def test_observability_values_reach_the_environment(chart: Any) -> None:
    values = {**DEV, "config": {**DEV.get("config", {}), "eventSinks": "log, redis", "sysInterval": 2.5,
                                "metricsTenantTop": 5, "eventStreamMaxlen": 500}}
    chart.validate_schema(chart.merge_values(values))
    settings = Settings.from_env(find(render(chart, values), "ConfigMap", FULLNAME)["data"])
    assert settings.event_sink_specs() == ["log", "redis"]
    assert (settings.sys_interval, settings.metrics_tenant_top, settings.event_stream_maxlen) == (2.5, 5, 500)


# ------------------------------------------------------------------ workers and API nodes


def test_worker_probes_drain_and_listeners(chart: Any) -> None:
    objects = render(chart, VALUE_SETS["tls-cluster"])
    deployment = find(objects, "Deployment", f"{FULLNAME}-worker")
    pod = deployment["spec"]["template"]["spec"]
    c = container(objects, "worker")
    assert deployment["spec"]["replicas"] == 3
    assert c["args"] == ["worker", "--processes", "2"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TIDEMQ_HEALTH_PORT"] == "8092"
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    # the drain (broker.stop: up to 10 s of disconnects, then store flushes) fits after the preStop sleep
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 30
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"mqtt": 1883, "health": 8092, "mqtt-tls": 8883, "mqtt-ws": 8080, "mqtt-wss": 8443}
    env = {e["name"]: e for e in c["env"]}
    assert env["TIDEMQ_TLS_PORT"]["value"] == "8883"
    assert env["TIDEMQ_WS_PORT"]["value"] == "8080"
    assert env["TIDEMQ_WSS_PORT"]["value"] == "8443"
    assert env["TIDEMQ_WS_PATH"]["value"] == "/ws"
    assert env["TIDEMQ_TLS_REQUIRE_CLIENT_CERT"]["value"] == "true"
    assert env["TIDEMQ_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "tidemq-redis", "key": "url"}
    assert "TIDEMQ_API_TOKEN" not in env
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    tls_files = {env[n]["value"] for n in ("TIDEMQ_TLS_CERT", "TIDEMQ_TLS_KEY", "TIDEMQ_TLS_CA")}
    assert tls_files == {"/etc/tidemq/tls/tls.crt", "/etc/tidemq/tls/tls.key", "/etc/tidemq/tls/ca.crt"}
    assert mounts["/etc/tidemq/tls"] == "tls" and mounts["/etc/tidemq/auth"] == "auth"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{FULLNAME}-tls"
    assert {i["path"] for i in volumes["tls"]["secret"]["items"]} == {"tls.crt", "tls.key", "ca.crt"}
    tls_secret = find(objects, "Secret", f"{FULLNAME}-tls")
    assert tls_secret["type"] == "kubernetes.io/tls" and set(tls_secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    service = find(objects, "Service", f"{FULLNAME}-mqtt")
    assert service["spec"]["type"] == "NodePort"
    mqtt_ports = {k: v for k, v in ports.items() if k != "health"}  # the probe port is not published
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == mqtt_ports
    assert {p["name"]: p.get("nodePort") for p in service["spec"]["ports"]}["mqtt"] == 31883


def test_default_worker_has_plain_mqtt_only(chart: Any) -> None:
    objects = render(chart, DEV)
    c = container(objects, "worker")
    assert [p["name"] for p in c["ports"]] == ["mqtt", "health"]  # MQTT and the probe endpoint only
    assert not {e["name"] for e in c["env"]} & {"TIDEMQ_TLS_PORT", "TIDEMQ_WS_PORT", "TIDEMQ_WSS_PORT"}
    service = find(objects, "Service", f"{FULLNAME}-mqtt")
    assert service["spec"]["type"] == "ClusterIP"  # nothing published outside the cluster by default
    assert [p["port"] for p in service["spec"]["ports"]] == [1883]
    assert not [o for o in objects if o["metadata"]["name"] == f"{FULLNAME}-tls"]


def test_api_probes_token_and_service(chart: Any) -> None:
    objects = render(chart, VALUE_SETS["tls-cluster"])
    c = container(objects, "api")
    assert c["args"] == ["api"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8091, "protocol": "TCP"}]
    env = {e["name"]: e for e in c["env"]}
    assert env["TIDEMQ_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": FULLNAME, "key": "api-token"}
    assert "TIDEMQ_TLS_CERT" not in env
    secret = find(objects, "Secret", FULLNAME)
    assert set(secret["data"]) == {"api-token"}  # the Redis URL comes from redis.existingSecret
    service = find(objects, "Service", f"{FULLNAME}-api")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 8091
    # autoscaled: the HPA owns the replica count
    assert "replicas" not in find(objects, "Deployment", f"{FULLNAME}-api")["spec"]
    hpa = find(objects, "HorizontalPodAutoscaler", f"{FULLNAME}-api")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert find(objects, "PodDisruptionBudget", f"{FULLNAME}-api")["spec"] == {
        "minAvailable": 1, "selector": hpa_selector(objects, "api")}


def hpa_selector(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return find(objects, "Deployment", f"{FULLNAME}-{component}")["spec"]["selector"]


def test_worker_autoscaling(chart: Any) -> None:
    objects = render(chart, VALUE_SETS["autoscaled"])
    assert "replicas" not in find(objects, "Deployment", f"{FULLNAME}-worker")["spec"]
    hpa = find(objects, "HorizontalPodAutoscaler", f"{FULLNAME}-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-worker"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_workers_only_and_existing_secrets(chart: Any) -> None:
    objects = render(chart, VALUE_SETS["workers-only"])
    assert not [o for o in objects if o["metadata"]["name"].endswith("-api")]
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    worker = container(objects, "worker")
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["TIDEMQ_WS_PORT"] == "8080" and env["TIDEMQ_WS_PATH"] == "/mqtt"
    assert not [n for n in env if n.startswith("TIDEMQ_TLS_")]  # plain WebSocket needs no certificate
    assert "tls" not in {m["name"] for m in worker["volumeMounts"]}
    objects = render(chart, VALUE_SETS["existing-secrets"])
    assert not [o for o in objects if o["metadata"]["name"] == f"{FULLNAME}-tls"]
    env = {e["name"]: e for e in container(objects, "api")["env"]}
    assert env["TIDEMQ_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "admin", "key": "token"}
    pod = find(objects, "Deployment", f"{FULLNAME}-worker")["spec"]["template"]["spec"]
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == "mqtt-cert"
    assert {i["key"]: i["path"] for i in tls["secret"]["items"]}["ca.crt"] == "ca.crt"


def test_config_change_rolls_the_pods(chart: Any) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = find(render(chart, values), "Deployment", f"{FULLNAME}-worker")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(DEV) != checksum({"config": {"allowInsecure": True, "maxInflight": 10}})


# ------------------------------------------------------------------ bad values are refused


@pytest.mark.parametrize("values", [
    {"redis": {"url": "memory://"}},  # one private store per pod
    {"redis": {"url": "http://redis:6379"}},
    {"workers": {"replicas": "three"}},
    {"workers": {"processes": 0}},
    {"config": {"logLevel": "LOUD"}},
    {"config": {"maxInflite": 10}},  # a typo is an error, not silently ignored
    {"listeners": {"mqtt": {"port": 70000}}},
    {"workers": {"service": {"type": "Ingress"}}},
    {"config": {"sysInterval": 0}},
    {"config": {"metricsTenantTop": -1}},
    {"config": {"eventSinks": "log,kafka"}},
    {"config": {"eventWebhookUrl": "ftp://hooks"}},
    {"config": {"eventQueue": 0}},
], ids=lambda v: str(v))
def test_schema_rejects_bad_values(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))
    report = helm.lint(CHART, values, namespace=NAMESPACE)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] >= 3]


def test_schema_accepts_the_shipped_values(chart: Any) -> None:
    for values in VALUE_SETS.values():
        chart.validate_schema(chart.merge_values(values))


@pytest.mark.parametrize(("values", "message"), [
    ({"listeners": {"tls": {"enabled": True}}}, "tls.cert"),
    ({"listeners": {"wss": {"enabled": True}}, "tls": {"cert": "c"}}, "tls.cert"),
    ({"listeners": {"tls": {"enabled": True}}, "tls": {"cert": "c", "key": "k", "requireClientCert": True}},
     "requireClientCert"),
])
def test_tls_without_material_fails_to_render(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(chart, values)


# ------------------------------------------------------------------ no unauthenticated exposure by accident


@pytest.mark.parametrize(("values", "named"), [
    ({}, ["authProvider=devonly", "the admin API"]),  # the defaults: devonly and no admin token
    ({"api": {"token": "t"}}, ["authProvider=devonly"]),
    ({"api": {"enabled": False}}, ["authProvider=devonly"]),
    ({"config": {"authProvider": "file", "authFile": "/a.json"}}, ["the admin API"]),
])
def test_unauthenticated_exposure_fails_to_render(chart: Any, values: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(helm.HelmError, match="allowInsecure") as caught:
        render(chart, values)
    for what in named:
        assert what in str(caught.value)


def test_authenticated_values_render_without_the_opt_in(chart: Any) -> None:
    objects = render(chart, SECURED)
    data = find(objects, "ConfigMap", FULLNAME)["data"]
    assert data["TIDEMQ_ALLOW_INSECURE"] == "false" and data["TIDEMQ_AUTH_PROVIDER"] == "file"
    assert render(chart, {"api": {"enabled": False}, "config": SECURED["config"]})


def test_notes_say_what_is_exposed(chart: Any) -> None:
    dev = notes(chart, DEV)
    assert "ClusterIP Service" in dev and "inside the cluster only" in dev
    assert "devonly" in dev and "WARNING (config.allowInsecure=true)" in dev and "the admin API without" in dev
    public = notes(chart, {**SECURED, "workers": {"service": {"type": "LoadBalancer"}}})
    assert "from outside the cluster" in public and "file auth provider" in public
    assert "WARNING" not in public and "needs a bearer token" in public


# ------------------------------------------------------------------ monitoring and network policies


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_monitors_scrape_every_worker_and_the_api(chart: Any) -> None:
    objects = render(chart, VALUE_SETS["monitored"])
    services = [o for o in objects if o["kind"] == "Service"]
    metrics = find(objects, "Service", f"{FULLNAME}-worker-metrics")
    assert metrics["spec"]["clusterIP"] == "None"  # headless: Prometheus scrapes each pod
    assert [p["name"] for p in metrics["spec"]["ports"]] == ["health"]
    worker_pod = find(objects, "Deployment", f"{FULLNAME}-worker")["spec"]["template"]
    assert _labels_match(metrics["spec"]["selector"], worker_pod["metadata"]["labels"])
    # the health port never lands on the (maybe public) MQTT Service
    mqtt = find(objects, "Service", f"{FULLNAME}-mqtt")
    assert "health" not in {p["name"] for p in mqtt["spec"]["ports"]}
    for component, port in (("worker", "health"), ("api", "http")):
        sm = find(objects, "ServiceMonitor", f"{FULLNAME}-{component}")
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        (selected,) = [s for s in services if _labels_match(sm["spec"]["selector"]["matchLabels"],
                                                            s["metadata"]["labels"])]
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in selected["spec"]["ports"]}
        assert endpoint["port"] == port and endpoint["path"] == "/metrics"
        assert endpoint["interval"] == "30s" and endpoint["scrapeTimeout"] == "10s"


def test_api_service_monitor_follows_api_enabled(chart: Any) -> None:
    values = {**VALUE_SETS["monitored"], "api": {"enabled": False}}
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(chart, values)}
    assert ("ServiceMonitor", f"{FULLNAME}-worker") in kinds
    assert ("ServiceMonitor", f"{FULLNAME}-api") not in kinds
    assert ("NetworkPolicy", f"{FULLNAME}-api") not in kinds


def test_network_policies_open_only_the_listeners(chart: Any) -> None:
    objects = render(chart, VALUE_SETS["monitored"])
    for component in ("worker", "api"):
        policy = find(objects, "NetworkPolicy", f"{FULLNAME}-{component}")
        pod = find(objects, "Deployment", f"{FULLNAME}-{component}")["spec"]["template"]
        assert _labels_match(policy["spec"]["podSelector"]["matchLabels"], pod["metadata"]["labels"])
        assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress (Redis, webhook, DNS) stays open
        container_ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        opened = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
        assert set(opened) <= container_ports, "a policy names a port the pod does not have"
    worker = find(objects, "NetworkPolicy", f"{FULLNAME}-worker")["spec"]["ingress"]
    mqtt_rule, health_rule = worker
    assert [p["port"] for p in mqtt_rule["ports"]] == ["mqtt", "mqtt-ws"]  # tls and wss are off here
    assert mqtt_rule["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert [p["port"] for p in health_rule["ports"]] == ["health"]
    assert health_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    (api_rule,) = find(objects, "NetworkPolicy", f"{FULLNAME}-api")["spec"]["ingress"]
    assert [p["port"] for p in api_rule["ports"]] == ["http"] and "from" not in api_rule  # empty: anywhere


def test_monitoring_values_docs_and_templates_agree() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = (CHART.parents[1] / "docs" / "deploy.md").read_text()
    templates = {name: (CHART / "templates" / f"{name}.yaml").read_text()
                 for name in ("servicemonitor", "networkpolicy")}
    for section, template in (("serviceMonitor", "servicemonitor"), ("networkPolicy", "networkpolicy")):
        assert values[section]["enabled"] is False, f"{section} must be off by default"
        assert f".Values.{section}.enabled" in templates[template]
        for key in values[section]:
            assert f"`{section}.{key}`" in docs, f"docs/deploy.md does not describe {section}.{key}"
            if key != "enabled":
                assert f"$sm.{key}" in templates[template] or f"$np.{key}" in templates[template], \
                    f"{section}.{key} is in values.yaml but no template reads it"
