"""`devpynode login --sso` (loopback redirect, RFC 8252) and `--device` (RFC 8628) against the real provider,
the provider's pages driven headlessly while the CLI waits."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pynode.app.server import MeshServer
from tests.client import DEVPYNODE, run_cli
from tests.conftest import one_backend
from tests.oidcprovider import Browser, Provider, person

pytestmark = one_backend  # a command-line client is a gRPC client: see tests/conftest.py


async def _cli_until(args: list[str], env: dict[str, str], marker: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start the CLI and read its output up to (and with) the first line containing `marker`."""
    process = await asyncio.create_subprocess_exec(
        *DEVPYNODE,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if not line:
            assert process.stderr is not None
            raise AssertionError(f"the CLI ended early: {lines} {(await process.stderr.read()).decode()}")
        lines.append(line.rstrip("\n"))
        if marker in line:
            return process, lines


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _env(mesh: MeshServer, tmp_path: Path) -> dict[str, str]:
    return {"DEVPYNODE_SERVER": f"127.0.0.1:{mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}


async def test_login_sso_loopback(sso_mesh: MeshServer, oidc_provider: Provider, tmp_path: Path) -> None:
    account, email = person("alice")
    env = _env(sso_mesh, tmp_path)
    process, lines = await _cli_until(["login", "--sso", "corp", "--no-browser"], env, "/auth?")
    browser = Browser(oidc_provider.issuer)
    try:
        page = await asyncio.to_thread(browser.sign_in_and_return, lines[-1].strip(), account)
    finally:
        browser.close()
    assert page.status_code == 200 and "close this tab" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    code, out, err = await _finish(process)
    assert code == 0, err
    assert f"as {email} (new account)" in out
    code, out, err = await run_cli("whoami", env=env)
    assert code == 0 and out.startswith(email), err


async def test_login_device(sso_mesh: MeshServer, oidc_provider: Provider, tmp_path: Path) -> None:
    account, email = person("alice")
    env = _env(sso_mesh, tmp_path)
    process, lines = await _cli_until(["login", "--device", "corp"], env, "(or open ")
    complete = lines[-1].removeprefix("(or open ").rstrip(")")
    assert "enter the code" in lines[-2]
    browser = Browser(oidc_provider.issuer)
    try:
        await asyncio.to_thread(browser.approve_device, complete, account)
    finally:
        browser.close()
    code, out, err = await _finish(process)
    assert code == 0, err
    assert f"as {email}" in out
    code, out, err = await run_cli("whoami", env=env)
    assert code == 0 and out.startswith(email), err


async def test_login_sso_unknown_provider_is_one_line(sso_mesh: MeshServer, tmp_path: Path) -> None:
    code, _, err = await run_cli("login", "--sso", "nope", env=_env(sso_mesh, tmp_path))
    assert code == 1 and "no sign-in provider 'nope'" in err and len(err.strip().splitlines()) == 1


async def test_login_sso_with_several_providers_asks_for_one(sso_mesh: MeshServer, tmp_path: Path) -> None:
    code, _, err = await run_cli("login", "--sso", env=_env(sso_mesh, tmp_path))
    assert code == 1 and "several sign-in providers" in err and "corp" in err
