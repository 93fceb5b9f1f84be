"""An administrator's client of ModelAdminService for the tests, and reading a pull that must fail."""

from __future__ import annotations

from typing import Any

import grpc
from devpynode.ai.v1 import models_pb2, models_pb2_grpc

from tests.ai.conftest import AIClient
from tests.client import PASSWORD, MeshClient, RichError, new_email, rich_error
from tests.conftest import auth_of


async def pull_fails(call: Any) -> RichError:
    """Read a pull that must end in an error; returns its rich error."""
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as error:
        return rich_error(error)
    raise AssertionError("the pull succeeded but was expected to fail")


class Admin:
    """An administrator of a test mesh with the ModelAdminService stub."""

    def __init__(self, client: MeshClient, user_id: str, parts: Any) -> None:
        self.client = client
        self.user_id = user_id
        self.stub = models_pb2_grpc.ModelAdminServiceStub(client.channel)
        self.parts = parts

    def md(self) -> list[tuple[str, str]]:
        return self.client.md()

    async def models(self, parent: str = "") -> models_pb2.ListProviderModelsResponse:
        request = models_pb2.ListProviderModelsRequest(parent=parent)
        response: models_pb2.ListProviderModelsResponse = await self.stub.ListProviderModels(
            request, metadata=self.md(), timeout=10
        )
        return response

    async def by_id(self) -> dict[str, models_pb2.ProviderModel]:
        return {m.model_id: m for m in (await self.models()).provider_models}

    def pull(self, name: str) -> Any:
        return self.stub.PullProviderModel(models_pb2.PullProviderModelRequest(name=name), metadata=self.md())

    def actions(self, action: str, outcome: str) -> float:
        for metric in self.parts.model_admin.audit.counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels == {"action": action, "outcome": outcome}:
                    return float(sample.value)
        return 0.0


async def admin_of(ai: Any) -> tuple[AIClient, Admin]:
    user: AIClient = await ai()
    email = new_email()
    await auth_of(user.mesh).service.create_admin(email, PASSWORD, "Admin")
    admin = user.user.as_other_address()
    login = await admin.login(email)
    return user, Admin(admin, login.user.id, user.parts)
