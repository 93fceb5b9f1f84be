"""The AI router's entry point: its settings and the shared infrastructure in, the servicer out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devpynode.ai.v1 import ai_pb2, models_pb2

from pynode.ai.settings import AISettings
from pynode.core.module import Infrastructure, Registration, ServiceParts

if TYPE_CHECKING:  # the adapters are imported by build(): a CLI that only reads settings never loads them
    from pynode.ai.config import RouterConfig
    from pynode.ai.local_model import LocalSetup
    from pynode.ai.model_admin import ModelAdministration
    from pynode.ai.providers.base import Provider
    from pynode.ai.providers.managed import ModelManager
    from pynode.ai.router import Router
    from pynode.ai.service import AIService

_SERVICE = ai_pb2.DESCRIPTOR.services_by_name["AIRouterService"]
_MODEL_ADMIN = models_pb2.DESCRIPTOR.services_by_name["ModelAdminService"]


@dataclass
class AIComponents:
    """The AI router's wired parts, for its tools and tests."""

    service: AIService
    router: Router
    config: RouterConfig
    model_admin: ModelAdministration


def build_providers(
    config: RouterConfig, settings: AISettings, local: LocalSetup | None = None, dev_mode: bool = False
) -> dict[str, Provider]:
    """One client per configured provider, plus the built-in model (and the local one, when configured)."""
    from pynode.ai.local_model import PROVIDER, LocalProvider
    from pynode.ai.providers.builtin import BuiltinProvider
    from pynode.ai.providers.ollama import OllamaProvider
    from pynode.ai.providers.openai import OpenAIProvider

    providers: dict[str, Provider] = {"builtin": BuiltinProvider(settings.builtin_pace(dev_mode))}
    for name, spec in config.providers.items():
        if spec.type == "ollama":
            providers[name] = OllamaProvider(
                name,
                spec.url,
                keep_alive=spec.keep_alive,
                options=spec.options,
                first_token_seconds=settings.ai_first_token_seconds,
            )
        else:
            limit = (spec.max_concurrency or settings.ai_max_concurrency) + (
                spec.max_queue if spec.max_queue is not None else settings.ai_max_queue
            )
            if local is not None and name == PROVIDER:
                providers[name] = LocalProvider(
                    spec.url,
                    local.name,
                    local.server,
                    local.problem,
                    first_token_seconds=settings.ai_first_token_seconds,
                    max_connections=max(8, limit),
                )
                continue
            providers[name] = OpenAIProvider(
                name,
                spec.url,
                spec.key(),
                models=spec.models,
                options=spec.options,
                first_token_seconds=settings.ai_first_token_seconds,
                max_connections=max(8, limit),
            )
    return providers


def build_model_managers(
    providers: dict[str, Provider], config: RouterConfig, settings: AISettings, data_dir: Path
) -> dict[str, ModelManager]:
    """Each provider's model administration: the local provider's configured GGUF files, Ollama's through its
    API, a provider's own `model_manager()` when it has one, and the rest listed from what they offer."""
    from pynode.ai.local_model import LocalProvider
    from pynode.ai.model_admin import ListedModels
    from pynode.ai.providers.local_models import LocalModels
    from pynode.ai.providers.ollama_models import OllamaModels

    managers: dict[str, ModelManager] = {}
    for name, provider in providers.items():
        own = getattr(provider, "model_manager", None)
        spec = config.providers.get(name)
        if isinstance(provider, LocalProvider):
            managers[name] = LocalModels(provider, settings, data_dir)
        elif callable(own):
            managers[name] = own()
        elif spec is not None and spec.type == "ollama":
            managers[name] = OllamaModels(
                name, spec.url, keep_alive=spec.keep_alive, load_seconds=settings.ai_first_token_seconds
            )
        else:
            managers[name] = ListedModels(provider)
    return managers


class AIModule:
    """devpynode.ai.v1.AIRouterService."""

    name = "ai"
    settings_class = AISettings
    service_names = (_SERVICE.full_name, _MODEL_ADMIN.full_name)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    def load_tables(self) -> None:
        from pynode.ai.adapters import sql_usage  # noqa: F401 - registers the tables

    async def build(self, settings: AISettings, infra: Infrastructure) -> ServiceParts:
        from devpynode.ai.v1 import ai_pb2_grpc, models_pb2_grpc

        from pynode.ai.adapters.grpc_audit import GrpcAuditTrail
        from pynode.ai.adapters.grpc_files import GrpcPictureFiles
        from pynode.ai.adapters.sql_usage import SqlUsageLedger
        from pynode.ai.cache import ResponseCache
        from pynode.ai.config import load_config
        from pynode.ai.ledger import BufferedLedger
        from pynode.ai.local_model import prepare
        from pynode.ai.metrics import AIMetrics
        from pynode.ai.model_admin import ModelAdministration, ModelAudit
        from pynode.ai.model_admin_servicer import ModelAdminServicer
        from pynode.ai.providers.base import public_url
        from pynode.ai.router import EmbeddingRouter, Router
        from pynode.ai.service import AIService, Limits
        from pynode.ai.servicer import AIRouterServicer

        infra.peers.require("auth")  # model changes are recorded in auth's audit trail
        local = prepare(settings, infra.data_dir)
        config = load_config(settings, local.url, local.name) if local else load_config(settings)
        providers = build_providers(config, settings, local, infra.dev_mode)
        router = Router(
            providers,
            config,
            max_concurrency=settings.ai_max_concurrency,
            max_queue=settings.ai_max_queue,
            first_token_seconds=settings.ai_first_token_seconds,
        )
        if local is not None and local.server is not None:
            local.server.on_ready = router.refresh_catalog
            local.server.start()  # in the background: serving does not wait for the model to load

        def gates() -> list[tuple[str, int, int]]:
            # Listed deployments, and others only while busy: a caller's invented model name is no lasting series.
            listed = router.listed()
            return [(d, g.waiting, g.active) for d, g in list(router.gates.items()) if d in listed or g.active]

        metrics = AIMetrics(gates)
        ledger = BufferedLedger(SqlUsageLedger(infra.db))
        service = AIService(
            router,
            ResponseCache(infra.kv, settings.ai_cache_seconds),
            ledger,
            infra.kv,
            metrics,
            Limits(
                settings.ai_default_max_tokens,
                settings.ai_requests_per_minute,
                settings.ai_tokens_per_day,
                settings.ai_streams_per_user,
                settings.ai_streams_per_address,
                settings.ai_max_generation_seconds,
                settings.ai_max_image_bytes,
                settings.ai_max_images,
                settings.ai_embed_max_inputs,
                settings.ai_embed_max_chars,
                settings.ai_embed_batch_size,
                max_request_image_bytes=settings.ai_max_request_image_bytes,
            ),
            embeddings=EmbeddingRouter(router, settings.ai_embed_timeout_seconds),
            # Not required at start: only pictures given by file id need the files service.
            pictures=GrpcPictureFiles(infra.peers),
        )

        audit = ModelAudit(GrpcAuditTrail(infra.peers))
        model_admin = ModelAdministration(build_model_managers(providers, config, settings, infra.data_dir), audit)

        async def close() -> None:
            await model_admin.close()
            await audit.close()
            await service.close()
            await ledger.close()
            for provider in providers.values():
                await provider.close()

        described = ", ".join(
            f"{name} ({spec.type} {public_url(spec.url)})"
            for name, spec in config.providers.items()
            if local is None or name != "local"
        )
        backends = {"models": f"builtin, {described}" if described else "builtin"}
        if local is not None:
            backends["local"] = local.describe()
        return ServiceParts(
            [
                Registration(_SERVICE, ai_pb2_grpc.add_AIRouterServiceServicer_to_server, AIRouterServicer(service)),
                Registration(
                    _MODEL_ADMIN,
                    models_pb2_grpc.add_ModelAdminServiceServicer_to_server,
                    ModelAdminServicer(model_admin),
                ),
            ],
            closers=[close],
            collectors=[*metrics.collectors, audit.counter],
            component=AIComponents(service, router, config, model_admin),
            backends=backends,
        )


MODULE = AIModule()
