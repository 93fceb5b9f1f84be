"""The fifth service's entry point: servicer, table and peer client, the way a real service module does it.

Its table sits on a MetaData of its own, not `Base.metadata`: the module leaves the list when its test ends,
and the platform-wide "models and migrations agree" check of the other tests must not see it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa

from pynode.core.errors import InvalidArgument
from pynode.core.module import Infrastructure, Registration, ServiceParts
from pynode.core.peers import PeerClient
from pynode.core.principal import current_principal
from pynode.core.settings import SettingsError
from tests.app.fifth import contract
from tests.app.fifth.settings import FifthSettings

NOTES = sa.Table(
    "fifth_notes",
    sa.MetaData(),
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("text", sa.String(200), nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
)


class NoteServicer:
    """AddNote stores a note with its caller's identity; CountNotes counts them."""

    def __init__(self, infra: Infrastructure, settings: FifthSettings) -> None:
        self._db = infra.db
        self._limit = settings.fifth_note_limit

    async def AddNote(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not request.text or len(request.text) > self._limit:
            raise InvalidArgument(f"text: give 1 to {self._limit} characters")
        author = current_principal().subject

        def insert(connection: sa.Connection) -> int:
            return int(
                connection.execute(NOTES.insert().values(text=request.text, author=author)).inserted_primary_key[0]
            )

        return contract.AddNoteResponse(id=await self._db.transaction(insert))

    async def CountNotes(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        def count(connection: sa.Connection) -> int:
            return int(connection.execute(sa.select(sa.func.count()).select_from(NOTES)).scalar_one())

        return contract.CountNotesResponse(count=await self._db.transaction(count))


def add_to_server(servicer: NoteServicer, server: Any) -> None:
    """What generated code's `add_NoteServiceServicer_to_server` does."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=contract.message(f"{name}Request").FromString,
            response_serializer=contract.message(f"{name}Response").SerializeToString,
        )
        for name in ("AddNote", "CountNotes")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(contract.SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(contract.SERVICE_NAME, handlers)


class Notes(PeerClient):
    """The peer client another service would write in its adapters/: AddNote with its service token."""

    service = "fifth"

    async def add(self, text: str) -> int:
        call = self.channel.unary_unary(
            f"/{contract.SERVICE_NAME}/AddNote",
            request_serializer=contract.AddNoteRequest.SerializeToString,
            response_deserializer=contract.AddNoteResponse.FromString,
        )
        response = await self.unary(call(contract.AddNoteRequest(text=text), **await self.options(as_user=False)))
        return int(response.id)


class FifthModule:
    """devpynode.fifth.v1.NoteService."""

    name = "fifth"
    settings_class = FifthSettings
    service_names = (contract.SERVICE_NAME,)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    def check_production_safety(self, settings: FifthSettings) -> None:
        """The optional `ChecksProductionSafety` hook."""
        if not settings.fifth_secret.get_secret_value():
            raise SettingsError("DEVPYNODE_FIFTH_SECRET: required when dev mode is off")

    def load_tables(self) -> None:
        """Nothing to register: its table is on its own MetaData (see the module docstring)."""

    async def build(self, settings: FifthSettings, infra: Infrastructure) -> ServiceParts:
        return ServiceParts([Registration(contract.SERVICE, add_to_server, NoteServicer(infra, settings))])


MODULE = FifthModule()
