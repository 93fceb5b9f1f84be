"""The services this platform is made of: the one list to extend when a service is added."""

from __future__ import annotations

from pynode.ai.module import MODULE as AI
from pynode.auth.module import MODULE as AUTH
from pynode.chat.module import MODULE as CHAT
from pynode.core.module import ServiceModule
from pynode.door.module import MODULE as DOOR
from pynode.files.module import MODULE as FILES

# Order is start-up order: the token issuer (auth) first, since every other service verifies its tokens; the
# OpenAI-compatible door (HTTP only) last, once what it relays to is built.
MODULES: tuple[ServiceModule, ...] = (AUTH, AI, FILES, CHAT, DOOR)


def names() -> tuple[str, ...]:
    """Every service name `--only` accepts."""
    return tuple(m.name for m in MODULES)


def chosen(only: tuple[str, ...]) -> tuple[ServiceModule, ...]:
    """The modules `--only` picks (all of them when empty), in start-up order."""
    return tuple(m for m in MODULES if not only or m.name in only)


def token_issuer() -> ServiceModule:
    """The module that serves the identity kernel's `ISSUER_SERVICE` (GetJwks, IssueServiceToken)."""
    from pynode.core.identity import ISSUER_SERVICE  # here: the kernel pulls in gRPC and JWT, listing needs neither

    for module in MODULES:
        if ISSUER_SERVICE in module.service_names:
            return module
    raise LookupError(f"no module in the list serves {ISSUER_SERVICE}, which every process verifies tokens with")
