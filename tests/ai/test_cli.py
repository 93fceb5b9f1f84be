"""`devpynode models` and `devpynode ask` against a running mesh."""

from __future__ import annotations

import json
from pathlib import Path

from pynode.app.server import MeshServer
from tests.client import PASSWORD, MeshClient, new_email, run_cli_here
from tests.conftest import one_backend

pytestmark = one_backend  # a command-line client is a gRPC client: see tests/conftest.py


async def test_models_and_ask(client: MeshClient, mesh: MeshServer, tmp_path: Path) -> None:
    email = new_email()
    await client.register(email)
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await run_cli_here("login", "--email", email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    code, out, err = await run_cli_here("models", env=env)
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0][:3] == ["id", "provider", "available"]
    assert ["builtin/echo", "builtin", "yes", "development"] in [r[:4] for r in rows]
    code, out, err = await run_cli_here("ask", "--model", "builtin/echo", "hello from the terminal", env=env)
    assert code == 0, err
    assert out == "hello from the terminal\n"
    assert err.strip().splitlines()[-1] == "[builtin/echo: 4 prompt + 4 completion tokens, stop]"
    code, _, err = await run_cli_here("ask", "--model", "nosuch", "x", env=env)
    assert code != 0 and "Traceback" not in err and "no model or alias 'nosuch'" in err
    assert err.startswith("devpynode: ") and len(err.splitlines()) == 1, err  # one line, no blank one before it
    code, out, err = await run_cli_here("ask", "  ", env=env)
    assert code == 2 and out == "" and err.startswith("devpynode: PROMPT: empty"), err


async def test_ask_with_tools_and_embed(client: MeshClient, mesh: MeshServer, tmp_path: Path) -> None:
    email = new_email()
    await client.register(email)
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await run_cli_here("login", "--email", email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}])
    )
    code, out, err = await run_cli_here(
        "ask", "-m", "builtin/echo", "--tools", str(tools), "--tool-choice", "lookup", "find gRPC", env=env
    )
    assert code == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith('-> lookup({"text": "find gRPC"})  [call call_'), out
    assert err.strip().splitlines()[-1].endswith("tool calls]")
    code, _, err = await run_cli_here("ask", "--tool-choice", "required", "x", env=env)
    assert code == 2 and "--tool-choice needs --tools FILE" in err
    tools.write_text("{not json")
    code, _, err = await run_cli_here("ask", "--tools", str(tools), "x", env=env)
    assert code == 2 and "not JSON" in err and "Traceback" not in err

    code, out, err = await run_cli_here("embed", "red apple", "blue sky", env=env)
    assert code == 0, err
    vectors = [json.loads(line) for line in out.splitlines()]
    assert len(vectors) == 2 and {len(v) for v in vectors} == {64}
    assert "builtin/echo: 2 vectors of 64" in err
    code, _, err = await run_cli_here("embed", "-m", "nosuch", "x", env=env)
    assert code != 0 and "Traceback" not in err
