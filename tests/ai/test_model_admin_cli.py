"""`devpynode models ls|show|pull|rm|load|unload` against a mesh whose Ollama is the fake, and the bare
`devpynode models` listing beside them."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from tests.ai.fake_ollama import FakeOllama, managed_ollama  # noqa: F401 - this module's `ollama`
from tests.client import DEVPYNODE, PASSWORD, new_email, run_cli_here
from tests.conftest import auth_of, one_backend

pytestmark = one_backend  # a command-line client is a gRPC client: see tests/conftest.py


async def _signed_in(ai: Any, tmp_path: Path, *, admin: bool) -> dict[str, str]:
    """The environment of a CLI signed in to a fresh mesh, as an administrator or a user."""
    client = await ai()
    email = new_email()
    if admin:
        await auth_of(client.mesh).service.create_admin(email, PASSWORD, "Admin")
    else:
        await client.user.as_other_address().register(email)
    env = {
        "DEVPYNODE_SERVER": f"127.0.0.1:{client.mesh.port}",
        "DEVPYNODE_CONFIG_DIR": str(tmp_path / ("admin" if admin else "user")),
    }
    code, _, err = await run_cli_here("login", "--email", email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    return env


async def test_list_show_pull_rm(ai: Any, ollama: FakeOllama, tmp_path: Path) -> None:
    env = await _signed_in(ai, tmp_path, admin=True)
    code, out, err = await run_cli_here("models", env=env)  # the bare command still lists the router's models
    assert code == 0, err
    assert ["builtin/echo", "builtin", "yes", "development"] in [line.split("\t")[:4] for line in out.splitlines()]

    code, out, err = await run_cli_here("models", "ls", env=env)
    assert code == 0, err
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert rows["id"][:3] == ["id", "size", "family"]
    assert rows["ollama/llama3.2:latest"][1:] == [
        "2.0 GB",
        "llama",
        "1.2B",
        "Q4_K_M",
        "131072",
        "completion,tools",
        "no",
    ]

    code, out, err = await run_cli_here("models", "show", "llama3.2", env=env)
    assert code == 0, err
    assert "context length: 131072" in out and "quantization:   Q4_K_M" in out and "temperature 0.6" in out

    code, out, err = await run_cli_here("models", "pull", "smollm2:135m", env=env)
    assert code == 0, err
    assert out.strip() == "pulled ollama/smollm2:135m (2.0 GB)"
    assert err.splitlines()[0] == "pulling manifest" and "writing manifest" in err
    assert "smollm2:135m" in ollama.stored

    code, out, err = await run_cli_here("models", "load", "ollama/smollm2:135m", env=env)
    assert code == 0 and out.strip() == "loaded ollama/smollm2:135m", err
    code, out, err = await run_cli_here("models", "unload", "smollm2:135m", env=env)
    assert code == 0 and out.strip() == "unloaded ollama/smollm2:135m", err

    code, out, err = await run_cli_here("models", "rm", "smollm2:135m", env=env)
    assert code == 0 and out.strip() == "deleted ollama/smollm2:135m", err
    assert "smollm2:135m" not in ollama.stored
    code, _, err = await run_cli_here("models", "rm", "smollm2:135m", env=env)
    assert code == 1 and "Traceback" not in err and err.strip().endswith("(NOT_FOUND)")
    assert len(err.strip().splitlines()) == 1
    code, _, err = await run_cli_here("models", "pull", "bad name", env=env)
    assert code == 1 and "(INVALID_ARGUMENT)" in err and "Traceback" not in err


async def test_ctrl_c_stops_a_pull(ai: Any, ollama: FakeOllama, tmp_path: Path) -> None:
    env = await _signed_in(ai, tmp_path, admin=True)
    ollama.pull_delay = 0.3
    process = await asyncio.create_subprocess_exec(
        *DEVPYNODE,
        "models",
        "pull",
        "smollm2:135m",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        first = await asyncio.wait_for(process.stderr.readline(), 30)
        assert first.decode().strip() == "pulling manifest"
        process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(process.stderr.read(), 30)
        assert await process.wait() == 130
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "(cancelled: the download stopped)" in rest.decode()
    for _ in range(200):
        if ollama.pull_disconnects:
            break
        await asyncio.sleep(0.025)
    assert ollama.pull_disconnects == 1 and "smollm2:135m" not in ollama.stored


async def test_users_are_refused(ai: Any, tmp_path: Path) -> None:
    env = await _signed_in(ai, tmp_path, admin=False)
    code, out, err = await run_cli_here("models", env=env)
    assert code == 0 and "builtin/echo" in out, err
    for args in (("ls",), ("pull", "llama3.2"), ("rm", "llama3.2")):
        code, _, err = await run_cli_here("models", *args, env=env)
        assert code == 1 and "(PERMISSION_DENIED)" in err and "Traceback" not in err, args
