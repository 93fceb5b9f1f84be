"""The Helm chart, through Helm 4 as a library (helm-python-sdk): lint and render with several values sets,
every object validated offline against a pinned Kubernetes version (kubernetes-validate, strict), the schema
refusing bad values, and the rendered Envoy configuration accepted by a real Envoy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "dev-pynode"
KUBERNETES = "1.30.0"
ENVOY = Path(sys.executable).parent / "envoy"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "small": {
        "autoscaling": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "envoy": {"tls": {"enabled": False}, "service": {"type": "ClusterIP", "port": 80}, "allowedOrigins": ["http://localhost:8080"]},
        "existingSecret": "devpynode-secrets",
        "networkPolicy": {"enabled": False},
        "backup": {"enabled": False},
        "migration": {"enabled": False},
        "serviceMonitor": {"enabled": True},
    },
    "production": {
        "image": {"repository": "registry.example.com/devpynode", "tag": "1.2.3"},
        "services": {"chat": {"replicas": 4, "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}}}},
        "envoy": {"allowedOrigins": ["https://chat.example.com", "https://admin.example.com"]},
        "config": {"DEVPYNODE_CLAMD_ADDRESS": "clamav:3310"},
        "networkPolicy": {
            "dataStores": [
                {"name": "postgres", "podSelector": {"app.kubernetes.io/name": "postgresql"}, "ports": [5432]},
                {"name": "redis", "podSelector": {"app.kubernetes.io/name": "redis"}, "ports": [6379]},
            ]
        },
    },
    "local-model": {"localModel": {"enabled": True, "contextTokens": 2048}},
    "traced": {"tracing": {"endpoint": "http://collector.observability:4317", "samplerArg": "0.1"}},
}  # fmt: skip


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name="prod", namespace="devpynode", is_install=True)
    objects = []
    for text in manifests.values():
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_render_and_validate_every_object(name: str) -> None:
    values = VALUE_SETS[name]
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report
    objects = render(values)
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            assert obj["kind"] == "ServiceMonitor" and obj["spec"]["endpoints"][0]["port"] == "metrics"
            continue  # a CRD: no schema in Kubernetes' own
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_defaults_deploy_what_the_seed_asks_for() -> None:
    objects = render({})
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    assert set(deployments) == {f"prod-dev-pynode-{n}" for n in ("auth", "ai", "files", "chat", "door", "envoy")}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"], name
            assert not security["allowPrivilegeEscalation"] and security["capabilities"]["drop"] == ["ALL"]
            if not name.endswith("envoy"):
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert container[probe]["grpc"]["port"] == 50051, (name, probe)
    # The gateway pod serves the web app: a `web` container (the platform's image) on the pod's loopback, where
    # Envoy's `web` cluster points.
    gateway_pod = deployments["prod-dev-pynode-envoy"]["spec"]["template"]["spec"]
    (web,) = (c for c in gateway_pod["containers"] if c["name"] == "web")
    assert web["args"] == ["gateway", "web", "--host", "127.0.0.1", "--port", "8000"]
    assert web["image"] == deployments["prod-dev-pynode-auth"]["spec"]["template"]["spec"]["containers"][0]["image"]
    envoy_config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "prod-dev-pynode-envoy")
    clusters = {c["name"]: c for c in yaml.safe_load(envoy_config["data"]["envoy.yaml"])["staticResources"]["clusters"]}
    web_address = clusters["web"]["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
    assert web_address["socketAddress"] == {"address": "127.0.0.1", "portValue": 8000}
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    for name in ("auth", "ai", "files", "chat"):
        assert services[f"prod-dev-pynode-{name}"]["spec"]["clusterIP"] == "None"  # headless: per-call balancing
    assert services["prod-dev-pynode-envoy"]["spec"]["type"] == "LoadBalancer"
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
        assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert len(by_kind(objects, "HorizontalPodAutoscaler")) == 5 and len(by_kind(objects, "PodDisruptionBudget")) == 6
    (job,) = by_kind(objects, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    (cron,) = by_kind(objects, "CronJob")
    assert cron["spec"]["schedule"] == "0 * * * *"  # hourly: the seed's one-hour recovery point
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    gateway, services_policy = policies["prod-dev-pynode-gateway"], policies["prod-dev-pynode-services"]
    assert "from" not in gateway["ingress"][0]  # only Envoy is public
    sources = services_policy["ingress"][0]["from"]
    assert {s["podSelector"]["matchLabels"]["devpynode/role"] for s in sources} == {"gateway", "service"}
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "prod-dev-pynode-config")
    assert config["data"]["DEVPYNODE_CHAT_ADDRESS"] == "prod-dev-pynode-chat:50051"
    # The OpenAI-compatible door: its pods open the HTTP listener Envoy's `door` cluster points at.
    door_cluster = clusters["door"]["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
    assert door_cluster["socketAddress"] == {"address": "prod-dev-pynode-door", "portValue": 8090}
    assert config["data"]["DEVPYNODE_DOOR_PORT"] == "8090" and config["data"]["DEVPYNODE_DOOR_HOST"] == "0.0.0.0"
    door_ports = services["prod-dev-pynode-door"]["spec"]["ports"]
    assert {"name": "http", "port": 8090, "targetPort": "http", "protocol": "TCP"} in door_ports
    assert config["data"]["DEVPYNODE_DEV_MODE"] == "false"


def test_data_stores_are_reachable_from_the_services_and_jobs_only() -> None:
    objects = render(VALUE_SETS["production"])
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    store = policies["prod-dev-pynode-store-postgres"]
    assert store["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "postgresql"}
    (rule,) = store["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchExpressions"][0]["values"] == ["service", "job"]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    for job in [*by_kind(objects, "Job")]:
        assert job["spec"]["template"]["metadata"]["labels"]["devpynode/role"] == "job"


@pytest.mark.parametrize(
    "bad",
    [
        {"services": {"auth": {"replicas": "two", "resources": {}}}},
        {"envoy": {"allowedOrigins": ["*"]}},
        {"config": {"NOT_OURS": "x"}},
        {"autoscaling": {"targetCPUUtilizationPercentage": 170}},
        {"backup": {"destination": "ftp://somewhere"}},
        {"tracing": {"endpoint": "otel-collector:4317"}},  # a URL, as OTEL_EXPORTER_OTLP_ENDPOINT wants
        {"tracing": {"samplerArg": "2"}},
        {"unknownKey": True},
        {"localModel": {"model": "Not A Name"}},
        {"localModel": {"modelPath": "relative.gguf"}},
    ],
)
def test_the_schema_refuses_bad_values(bad: dict[str, Any]) -> None:
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(bad))


def test_tracing_values_become_the_standard_opentelemetry_variables() -> None:
    plain = render({})
    assert not any(k.startswith("OTEL_") for c in by_kind(plain, "ConfigMap") for k in c.get("data", {}))
    traced = render({"tracing": {"endpoint": "http://collector.observability:4317", "samplerArg": "0.25"}})
    (config,) = [c for c in by_kind(traced, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    assert config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.observability:4317"
    assert config["data"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert config["data"]["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert config["data"]["OTEL_TRACES_SAMPLER_ARG"] == "0.25"


def _envoy_config(objects: list[dict[str, Any]]) -> str:
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "prod-dev-pynode-envoy")
    return str(config["data"]["envoy.yaml"])


def _validate_envoy(text: str, tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    done = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("tracing", "host", "port", "percent", "uri"),
    [
        ({"endpoint": "http://collector.observability:4317", "samplerArg": "0.25"}, "collector.observability", 4317,
         25, None),
        ({"endpoint": "https://otlp.example.com", "protocol": "http/protobuf", "sampler": "parentbased_always_on"},
         "otlp.example.com", 4318, 100, "http://otlp.example.com:4318/v1/traces"),
        ({"endpoint": "http://tempo:4318/otlp/", "protocol": "http/protobuf", "sampler": "always_off"}, "tempo", 4318,
         0, "http://tempo:4318/otlp/v1/traces"),
    ],
)  # fmt: skip
def test_envoys_tracer_follows_the_tracing_values(
    tracing: dict[str, Any], host: str, port: int, percent: float, uri: str | None, tmp_path: Path
) -> None:
    assert "opentelemetry" not in _envoy_config(render({"envoy": {"tls": {"enabled": False}}}))
    objects = render({"tracing": tracing, "envoy": {"tls": {"enabled": False}}})
    text = _envoy_config(objects)
    _validate_envoy(text, tmp_path)
    envoy = yaml.safe_load(text)
    clusters = {c["name"]: c for c in envoy["staticResources"]["clusters"]}
    collector = clusters["opentelemetry_collector"]
    address = collector["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
    assert (address["address"], address["portValue"]) == (host, port)
    manager = envoy["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"]
    assert manager["tracing"]["randomSampling"]["value"] == percent
    tracer = manager["tracing"]["provider"]["typedConfig"]
    if uri is None:  # OTLP/gRPC, over HTTP/2
        assert tracer["grpcService"]["envoyGrpc"]["clusterName"] == "opentelemetry_collector"
        assert "http2ProtocolOptions" in str(collector["typedExtensionProtocolOptions"])
    else:
        assert tracer["httpService"]["httpUri"]["uri"] == uri
    # A change of the tracing values rolls the gateway's pods (their configuration changed).
    deployment = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "prod-dev-pynode-envoy")
    untraced = render({"envoy": {"tls": {"enabled": False}}})
    plain = next(d for d in by_kind(untraced, "Deployment") if d["metadata"]["name"] == "prod-dev-pynode-envoy")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations != plain["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize("tls", [True, False])
def test_the_rendered_envoy_configuration_validates(tls: bool, tmp_path: Path) -> None:
    values = {"envoy": {"tls": {"enabled": tls}, "allowedOrigins": ["https://a.example", "https://b.example"]}}
    objects = render(values)
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "prod-dev-pynode-envoy")
    text = config["data"]["envoy.yaml"]
    assert "prod-dev-pynode-auth" in text and "https://b.example" in text
    if tls:
        from tests.gateway.test_envoy import _certificate

        cert, key = _certificate(tmp_path)
        text = text.replace("/etc/envoy/tls/tls.crt", str(cert)).replace("/etc/envoy/tls/tls.key", str(key))
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    done = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert bool(re.search(r"tls_minimum_protocol_version|tlsMinimumProtocolVersion", text)) == tls


def test_the_local_model_is_optional_and_runs_the_server_serve_runs_as_its_child() -> None:
    from pynode.ai.local_model import LocalModel, server_command

    assert not [d for d in by_kind(render({}), "Deployment") if d["metadata"]["name"].endswith("local-model")]
    objects = render(VALUE_SETS["local-model"])
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    pod = deployments["prod-dev-pynode-local-model"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    expected = server_command(
        LocalModel("smollm2", Path("/models/smollm2.gguf")), host="0.0.0.0", port=8000, context=2048, python="python"
    )
    assert container["command"] == expected
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert all("tcpSocket" in container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    assert services["prod-dev-pynode-local-model"]["spec"]["ports"][0]["port"] == 8000
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "prod-dev-pynode-config")
    assert config["data"]["DEVPYNODE_AI_LOCAL_URL"] == "http://prod-dev-pynode-local-model:8000/v1"
    assert config["data"]["DEVPYNODE_AI_LOCAL_MODEL"] == "smollm2"
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    (rule,) = policies["prod-dev-pynode-local-model"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["devpynode/role"] == "service"
    assert pod["metadata"]["labels"]["devpynode/role"] == "model"
    # Turning it on rolls the AI router's pods (their ConfigMap changed).
    ai = deployments["prod-dev-pynode-ai"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    default_ai = next(d for d in by_kind(render({}), "Deployment") if d["metadata"]["name"] == "prod-dev-pynode-ai")
    assert ai != default_ai["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
