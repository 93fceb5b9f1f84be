"""`serve`'s event loop: uvloop unless DEVPYNODE_EVENT_LOOP asks for asyncio's own (issue 25)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from pynode.app.cli.process import _loop_factory
from pynode.core.settings import ServerSettings


def test_serve_runs_on_uvloop_by_default() -> None:
    factory = _loop_factory(ServerSettings.model_fields["event_loop"].default)
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncios_own_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVPYNODE_EVENT_LOOP", "asyncio")
    chosen = ServerSettings().event_loop  # type: ignore[call-arg]  # pydantic-settings fills the rest
    assert chosen == "asyncio" and _loop_factory(chosen) is None  # asyncio.Runner's default: the policy's loop
    with asyncio.Runner(loop_factory=_loop_factory(chosen)) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)
