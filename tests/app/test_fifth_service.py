"""A fifth service plugs in through its module alone: one more entry in the module list, and it is migrated,
served (health, reflection, the edge's access rules), configured by its own settings section, and reachable
from another process as a peer at `DEVPYNODE_FIFTH_ADDRESS`, with no edit to core or the app.

The service lives in `tests/app/fifth/`: a contract built in code, a settings section, one Alembic
migration, a servicer on a generic handler and the peer client another service would write.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pynode.app import migrate, modules
from pynode.app.bootstrap import build
from pynode.app.settings import load
from pynode.core.errors import InvalidArgument
from pynode.core.settings import SettingsError
from tests.app.fifth import contract
from tests.app.fifth.module import MODULE as FIFTH
from tests.app.fifth.module import NOTES, Notes
from tests.backends import Backend
from tests.client import MeshClient, fails
from tests.conftest import make_settings, start_mesh


@pytest.fixture
def fifth_listed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The one line a new service needs: its module in the list."""
    monkeypatch.setattr(modules, "MODULES", (*modules.MODULES, FIFTH))
    yield


@pytest.mark.usefixtures("fifth_listed")
def test_its_settings_follow_the_one_shape() -> None:
    settings = load(fifth_address="127.0.0.1:7001", fifth_note_limit=5)
    assert settings.addresses()["fifth"] == "127.0.0.1:7001"
    assert settings.section("fifth").fifth_note_limit == 5  # type: ignore[attr-defined]
    listed = {name for section in settings.sections() for name in type(section).model_fields}
    assert {"fifth_address", "fifth_note_limit", "auth_address", "chat_address"} <= listed  # what `config check` shows
    with pytest.raises(SettingsError, match=r"^DEVPYNODE_FIFTH_ADDRESS: 'nowhere' is not host:port"):
        load(fifth_address="nowhere")
    with pytest.raises(SettingsError, match=r"^DEVPYNODE_ONLY: unknown service\(s\) sixth; choose from .*,fifth$"):
        load(only="sixth")


@pytest.mark.usefixtures("fifth_listed")
def test_its_production_check_runs_where_it_is_served() -> None:
    production = {"dev_mode": False, "service_secret": "s" * 40}
    with pytest.raises(SettingsError, match=r"^DEVPYNODE_FIFTH_SECRET: required when dev mode is off$"):
        load(only="fifth", **production).check_production_safety()
    load(only="fifth", fifth_secret="set", **production).check_production_safety()
    with pytest.raises(SettingsError, match=r"^DEVPYNODE_AUTH_PRIVATE_KEYS"):  # auth's own hook, fifth's is met
        load(only="auth,fifth", fifth_secret="set", **production).check_production_safety()


@pytest.mark.usefixtures("fifth_listed")
async def test_it_is_migrated_served_and_reachable_as_a_peer(own_backend: Backend, tmp_path: Path) -> None:
    backend = own_backend
    if backend.database_url:
        await migrate.upgrade_async(backend.database_url)  # what `devpynode migrate` does, with the fifth's branch
    whole = await start_mesh(make_settings(backend, tmp_path / "whole", fifth_note_limit=40))
    try:
        assert "fifth_0001_notes" in migrate.heads(whole.platform.infra.db.url)
        assert await migrate.is_current(whole.platform.infra.db)
        address = f"127.0.0.1:{whole.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            served = await health.Check(health_pb2.HealthCheckRequest(service=contract.SERVICE_NAME))
            assert served.status == health_pb2.HealthCheckResponse.SERVING
            # The edge applies its contract: a user's token is refused by a service-only RPC.
            user = MeshClient(channel)
            await user.register()
            add = channel.unary_unary(
                f"/{contract.SERVICE_NAME}/AddNote",
                request_serializer=contract.AddNoteRequest.SerializeToString,
                response_deserializer=contract.AddNoteResponse.FromString,
            )
            refused = await fails(add(contract.AddNoteRequest(text="from a user"), metadata=user.md()))
            assert refused.code == grpc.StatusCode.PERMISSION_DENIED

        # Another process without the fifth service finds it by its address setting, like any peer.
        caller_settings = make_settings(
            backend, tmp_path / "caller", only="files", auth_address=address, fifth_address=address
        )
        caller = await start_mesh(caller_settings)
        try:
            notes = Notes(caller.platform.infra.peers)
            first = await notes.add("hello from files")
            assert await notes.add("a second note") == first + 1
            with pytest.raises(InvalidArgument, match="1 to 40 characters"):  # its own settings section applies
                await notes.add("x" * 41)
        finally:
            await caller.stop(0)

        def rows(connection: sa.Connection) -> list[tuple[str, str]]:
            return [(r.text, r.author) for r in connection.execute(sa.select(NOTES.c.text, NOTES.c.author))]

        stored = await whole.platform.infra.db.transaction(rows)
        assert [text for text, _ in stored] == ["hello from files", "a second note"]
        assert all(author.startswith("service:") for _, author in stored)  # the caller's service token
    finally:
        await whole.stop(0)


@pytest.mark.usefixtures("fifth_listed")
async def test_a_process_that_calls_it_elsewhere_needs_its_address(tmp_path: Path) -> None:
    embedded = Backend("embedded", "", "memory://", "t:")
    platform = await build(make_settings(embedded, tmp_path, only="auth"))
    try:
        with pytest.raises(SettingsError, match=r"^DEVPYNODE_FIFTH_ADDRESS: required when the fifth service runs in"):
            platform.infra.peers.require("fifth")
    finally:
        await platform.close()
