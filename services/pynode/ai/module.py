"""The AI router's entry point: its settings and the shared infrastructure in, the servicer out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devpynode.ai.v1 import ai_pb2

from pynode.ai.settings import AISettings
from pynode.core.module import Infrastructure, Registration, ServiceParts

if TYPE_CHECKING:  # the adapters are imported by build(): a CLI that only reads settings never loads them
    from pynode.ai.config import RouterConfig
    from pynode.ai.providers.base import Provider
    from pynode.ai.router import Router
    from pynode.ai.service import AIService

_SERVICE = ai_pb2.DESCRIPTOR.services_by_name["AIRouterService"]


@dataclass
class AIComponents:
    """The AI router's wired parts, for its tools and tests."""

    service: AIService
    router: Router
    config: RouterConfig


def build_providers(config: RouterConfig, settings: AISettings, dev_mode: bool = False) -> dict[str, Provider]:
    """One client per configured provider, plus the built-in model."""
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


class AIModule:
    """devpynode.ai.v1.AIRouterService."""

    name = "ai"
    settings_class = AISettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    def load_tables(self) -> None:
        from pynode.ai.adapters import sql_usage  # noqa: F401 - registers the tables

    async def build(self, settings: AISettings, infra: Infrastructure) -> ServiceParts:
        from devpynode.ai.v1 import ai_pb2_grpc

        from pynode.ai.adapters.sql_usage import SqlUsageLedger
        from pynode.ai.cache import ResponseCache
        from pynode.ai.config import load_config
        from pynode.ai.ledger import BufferedLedger
        from pynode.ai.metrics import AIMetrics
        from pynode.ai.providers.base import public_url
        from pynode.ai.router import Router
        from pynode.ai.service import AIService, Limits
        from pynode.ai.servicer import AIRouterServicer

        config = load_config(settings)
        providers = build_providers(config, settings, infra.dev_mode)
        router = Router(
            providers,
            config,
            max_concurrency=settings.ai_max_concurrency,
            max_queue=settings.ai_max_queue,
            first_token_seconds=settings.ai_first_token_seconds,
        )
        metrics = AIMetrics(lambda: [(d, g.waiting, g.active) for d, g in list(router.gates.items())])
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
            ),
        )

        async def close() -> None:
            await service.close()
            await ledger.close()
            for provider in providers.values():
                await provider.close()

        described = ", ".join(f"{name} ({spec.type} {public_url(spec.url)})" for name, spec in config.providers.items())
        return ServiceParts(
            [Registration(_SERVICE, ai_pb2_grpc.add_AIRouterServiceServicer_to_server, AIRouterServicer(service))],
            closers=[close],
            collectors=metrics.collectors,
            component=AIComponents(service, router, config),
            backends={"models": f"builtin, {described}" if described else "builtin"},
        )


MODULE = AIModule()
