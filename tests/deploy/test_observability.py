"""Prometheus and Grafana as shipped: the rules pass promtool (with unit tests), a real Prometheus scrapes a
running mesh and answers PromQL, and every dashboard query names a metric the platform exports."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pynode.app.server import MeshServer
from tests.backends import MODE
from tests.client import MeshClient

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMQL_WORDS = {
    "sum", "by", "rate", "histogram_quantile", "le", "min", "max", "avg", "increase", "without", "on", "and", "or",
    "unless", "ignoring", "group_left", "group_right", "count", "bool", "offset",
}  # fmt: skip


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if MODE == "require":
            pytest.fail(f"{name} is required (Debian package prometheus; .ci/run installs it)")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return found


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_promtool_checks_the_config_and_the_rules_and_their_unit_tests() -> None:
    promtool = _tool("promtool")
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run([promtool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
async def scraped_mesh(strict: Any) -> AsyncIterator[tuple[MeshClient, MeshServer]]:
    client: MeshClient = await strict(metrics_port=0)
    yield client, strict.servers[-1]


async def test_a_real_prometheus_scrapes_serve_and_answers_promql(
    scraped_mesh: tuple[MeshClient, MeshServer], tmp_path: Path
) -> None:
    prometheus = _tool("prometheus")
    client, mesh = scraped_mesh
    await client.register()
    await client.me()
    config = tmp_path / "prometheus.yml"
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: devpynode\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{mesh.metrics_port}']}}]\n"
    )
    port = _port()
    command = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = await asyncio.to_thread(subprocess.Popen, command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def query(promql: str) -> list[Any]:
                answer = (await http.get("/api/v1/query", params={"query": promql})).json()
                assert answer["status"] == "success", answer
                return list(answer["data"]["result"])

            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "prometheus exited"
                try:
                    if (await http.get("/-/ready")).status_code != 200:
                        raise httpx.HTTPError("starting")
                    up = await query('up{job="devpynode"}')
                    calls = await query(
                        'sum(grpc_server_handled_total{grpc_service="devpynode.auth.v1.AuthService",grpc_code="OK"})'
                    )
                    if up and up[0]["value"][1] == "1" and calls and float(calls[0]["value"][1]) >= 2:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "Prometheus never saw the mesh"
                await asyncio.sleep(0.5)
            events = await query('sum by (kind) (devpynode_auth_events_total{kind="register"})')
            assert events and float(events[0]["value"][1]) >= 1
            rules = (await http.get("/api/v1/rules")).json()["data"]["groups"]
            names = {rule["name"] for group in rules for rule in group["rules"]}
            assert {"DevPyNodeServiceDown", "DevPyNodeHighErrorRate", "DevPyNodeSessionFeedDown"} <= names
    finally:
        process.terminate()
        process.wait(10)


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (identifiers not in label matchers, not functions)."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_groupings = re.sub(r"\b(by|without)\s*\([^)]*\)", "", without_ranges)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_groupings))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("__")}


async def test_every_dashboard_query_names_an_exported_metric(scraped_mesh: tuple[MeshClient, MeshServer]) -> None:
    client, mesh = scraped_mesh
    await client.register()
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{mesh.metrics_port}/metrics")).text
    families = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    exported = set(families)
    for name, kind in families.items():
        if kind == "counter":
            exported.add(name + "_total")
        if kind == "histogram":
            exported |= {name + "_bucket", name + "_count", name + "_sum"}
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "devpynode.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert names, target["expr"]
            queried |= names
    missing = queried - exported
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"
    # And the dashboard covers what the issue asks for.
    for needed in (
        "grpc_server_handled_total",
        "devpynode_ai_time_to_first_token_seconds_bucket",
        "devpynode_ai_tokens_per_second_bucket",
        "devpynode_files_upload_bytes_total",
        "devpynode_ai_cache_lookups_total",
        "devpynode_ai_queue_depth",
        "devpynode_auth_events_total",
    ):
        assert needed in queried, needed
