"""Provider settings: a mistake is one clear line at start; an unreachable provider is one log line, its
sign-ins UNAVAILABLE, the others unaffected; no provider at all means no buttons and UNIMPLEMENTED."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2

from pynode.auth.oidc.config import parse_providers
from pynode.core.settings import SettingsError
from tests.backends import Backend
from tests.client import fails, run_cli_here
from tests.conftest import make_settings, one_backend, start_mesh
from tests.oidcprovider import Provider, free_port
from tests.sso.conftest import SsoClient


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("{not json", "DEVPYNODE_AUTH_OIDC_PROVIDERS: not JSON"),
        ('[{"id": "Corp", "issuer": "https://x", "client_id": "c"}]', "OIDC provider Corp: id: Value error, must be"),
        ('[{"id": "c", "issuer": "http://x.example", "client_id": "c"}]', "OIDC provider c: issuer"),
        ('[{"id": "c", "issuer": "https://x", "client_id": "c", "group_roles": {"g": "root"}}]', "unknown roles"),
        ('[{"id": "c", "issuer": "https://x", "client_id": "c", "id_token_algorithms": ["HS256"]}]', "asymmetric"),
        ('[{"id": "c", "issuer": "https://x", "client_id": "c", "scopes": ["email"]}]', "must include openid"),
        ('[{"id": "c", "issuer": "https://x", "client_id": "c", "colour": "red"}]', "colour: Extra inputs"),
        ('[{"id": "c", "issuer": "https://x", "client_id": "c"}, {"id": "c", "issuer": "https://y", "client_id": "d"}]',
         "ids used twice: c"),
    ],
)  # fmt: skip
def test_a_bad_provider_setting_is_one_clear_line(entries: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_providers(entries, "")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_providers_come_from_a_yaml_file_too(tmp_path: Path) -> None:
    file = tmp_path / "sso.yaml"
    file.write_text("providers:\n  - id: corp\n    issuer: https://login.corp.example\n    client_id: web\n")
    inline = json.dumps([{"id": "other", "issuer": "https://other.example", "client_id": "x"}])
    assert [p.id for p in parse_providers(inline, str(file))] == ["other", "corp"]


@one_backend
async def test_bad_settings_stop_the_start(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="OIDC provider"):
        await start_mesh(make_settings(backend, tmp_path, auth_oidc_providers='[{"id": "x"}]'))


@one_backend
async def test_an_unreachable_provider_is_one_line_and_unavailable(
    backend: Backend, oidc_provider: Provider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = {"id": "dead", "issuer": f"http://127.0.0.1:{free_port()}", "client_id": "c"}
    entries = json.dumps([dead, oidc_provider.settings("corp")])
    with caplog.at_level(logging.ERROR, logger="pynode.auth.oidc"):
        mesh = await start_mesh(make_settings(backend, tmp_path, auth_oidc_providers=entries))
    try:
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1 and "OIDC provider dead" in lines[0] and "not usable" in lines[0]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            client = SsoClient(channel, oidc_provider.issuer)
            listed = await client.auth.ListSignInProviders(auth_pb2.ListSignInProvidersRequest())
            assert [p.id for p in listed.providers] == ["dead", "corp"]
            error = await fails(client.start("dead"))
            assert error.code == grpc.StatusCode.UNAVAILABLE
            assert (await client.start("corp"))[0].authorization_url.startswith(oidc_provider.issuer)
    finally:
        await mesh.stop(0)


@one_backend
async def test_without_providers_there_are_none_to_list(backend: Backend, tmp_path: Path) -> None:
    mesh = await start_mesh(make_settings(backend, tmp_path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            client = SsoClient(channel, "")
            listed = await client.auth.ListSignInProviders(auth_pb2.ListSignInProvidersRequest())
            assert not listed.providers
            error = await fails(client.start())
            assert error.code == grpc.StatusCode.UNIMPLEMENTED and error.reason == "OIDC_NOT_CONFIGURED"
    finally:
        await mesh.stop(0)


async def test_config_check_hides_the_client_secrets() -> None:
    entry = {"id": "c", "issuer": "https://x.example", "client_id": "c", "client_secret": "s3cr3t-value"}
    entries = json.dumps([entry])
    _, out, err = await run_cli_here("config", "check", env={"DEVPYNODE_AUTH_OIDC_PROVIDERS": entries})
    assert "DEVPYNODE_AUTH_OIDC_PROVIDERS" in out and "(set, hidden)" in out, err
    assert "s3cr3t-value" not in out + err
