"""The settings root: the shared sections and one section per service module, read from the environment.

`load()` builds each section from `DEVPYNODE_*` variables (plus explicit overrides, e.g. command-line flags,
by field name) and turns any invalid value into one `SettingsError` line naming its variable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pynode.app import modules
from pynode.core.module import ChecksProductionSafety
from pynode.core.settings import (
    DEV_SERVICE_SECRET,
    MIN_SERVICE_SECRET_CHARS,
    MeshSettings,
    PeerAddresses,
    Section,
    ServerSettings,
    SettingsError,
    StoreSettings,
    env_name,
    peer_addresses,
)

SHARED: tuple[type[Section], ...] = (ServerSettings, StoreSettings, MeshSettings)


def peers_class() -> type[PeerAddresses]:
    """The peer address section of the listed modules: `DEVPYNODE_<NAME>_ADDRESS` for each."""
    return peer_addresses(modules.names())


@dataclass(frozen=True)
class Settings:
    """Everything one process reads: the shared sections and each service's own."""

    server: ServerSettings
    stores: StoreSettings
    mesh: MeshSettings
    peers: PeerAddresses
    services: dict[str, Section]  # module name -> its section

    def chosen(self) -> tuple[str, ...]:
        """Names of the services this process runs."""
        return tuple(m.name for m in modules.chosen(self.server.chosen()))

    def section(self, name: str) -> Section:
        """A service's own section."""
        return self.services[name]

    def sections(self) -> list[Section]:
        return [self.server, self.stores, self.mesh, self.peers, *self.services.values()]

    def addresses(self) -> dict[str, str]:
        """Each listed module's configured peer address ("" when unset)."""
        return {name: self.peers.address_of(name) for name in modules.names()}

    def check_production_safety(self) -> None:
        """Refuse development secrets and weak ones outside dev mode."""
        if self.server.dev_mode:
            return
        secret = self.mesh.service_secret.get_secret_value()
        if secret == DEV_SERVICE_SECRET:
            raise SettingsError("DEVPYNODE_SERVICE_SECRET: the development default is refused when dev mode is off")
        if len(secret) < MIN_SERVICE_SECRET_CHARS:
            raise SettingsError(
                f"DEVPYNODE_SERVICE_SECRET: {len(secret)} characters is too short outside dev mode; use at least "
                f"{MIN_SERVICE_SECRET_CHARS} (openssl rand -hex 32)"
            )
        for module in modules.chosen(self.server.chosen()):
            if isinstance(module, ChecksProductionSafety):
                module.check_production_safety(self.section(module.name))


def _build(kind: type[Section], overrides: dict[str, Any]) -> Section:
    mine = {k: v for k, v in overrides.items() if k in kind.model_fields}
    try:
        return kind(**mine)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        where = env_name(str(first["loc"][0])) if first["loc"] else kind.__name__
        raise SettingsError(f"{where}: {message}") from None


def load(**overrides: Any) -> Settings:
    """Settings from the environment, `overrides` (by field name) taking precedence."""
    known = {name for kind in (*SHARED, peers_class()) for name in kind.model_fields}
    known |= {name for m in modules.MODULES for name in m.settings_class.model_fields}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    server = _build(ServerSettings, overrides)
    assert isinstance(server, ServerSettings)
    bad = [s for s in server.chosen() if s not in modules.names()]
    if bad:
        raise SettingsError(
            f"DEVPYNODE_ONLY: unknown service(s) {', '.join(bad)}; choose from {','.join(modules.names())}"
        )
    stores, mesh = _build(StoreSettings, overrides), _build(MeshSettings, overrides)
    assert isinstance(stores, StoreSettings) and isinstance(mesh, MeshSettings)
    peers = _build(peers_class(), overrides)
    assert isinstance(peers, PeerAddresses)
    services = {m.name: _build(m.settings_class, overrides) for m in modules.MODULES}
    return Settings(server, stores, mesh, peers, services)


def replace_server(settings: Settings, **changes: Any) -> Settings:
    """The same settings with some process fields changed (e.g. `only` for a command-line tool)."""
    return dataclasses.replace(settings, server=settings.server.model_copy(update=changes))
