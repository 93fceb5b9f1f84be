"""`devpynode keys create | ls | revoke` against a running mesh, and the CLI calling with a key."""

from __future__ import annotations

import json
from pathlib import Path

from pynode.app.server import MeshServer
from tests.client import PASSWORD, MeshClient, new_email, run_cli_here
from tests.conftest import auth_of, one_backend

pytestmark = one_backend  # a command-line client is a gRPC client: see tests/conftest.py


async def test_create_list_use_and_revoke_from_the_command_line(
    client: MeshClient, mesh: MeshServer, tmp_path: Path
) -> None:
    email = new_email()
    await client.register(email)
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await run_cli_here("login", "--email", email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    code, out, err = await run_cli_here("keys", "create", "ci", "--scope", "ai", "--expires-in-days", "30", env=env)
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("dpn_") and len(out.splitlines()) == 1 and "shown only now" in err
    code, out, err = await run_cli_here("keys", "create", "script", "--json", env=env)
    assert code == 0, err
    created = json.loads(out)
    assert created["secret"].startswith("dpn_") and created["apiKey"]["name"] == "script"
    code, out, err = await run_cli_here("keys", "ls", env=env)
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0][:3] == ["id", "name", "scope"]
    assert {(r[1], r[2]) for r in rows[1:]} == {("ci", "ai"), ("script", "full")}
    assert secret not in out and created["secret"] not in out
    # The CLI itself can call with a key (DEVPYNODE_API_KEY) instead of the kept sign-in.
    keyed = {**env, "DEVPYNODE_API_KEY": secret}
    code, out, err = await run_cli_here("ask", "--model", "builtin/echo", "with a key", env=keyed)
    assert code == 0 and out == "with a key\n", err
    code, _, err = await run_cli_here("files", "ls", env=keyed)
    assert code != 0 and "AI router only" in err and len(err.splitlines()) == 1, err
    code, _, err = await run_cli_here("keys", "create", "more", env=keyed)
    assert code != 0 and "signed-in session" in err, err
    code, out, err = await run_cli_here("token", env=keyed)  # `$(devpynode token)` gets what the commands send
    assert code == 0 and out.strip() == secret, err
    key_id = created["apiKey"]["id"]
    code, out, err = await run_cli_here("keys", "revoke", created["apiKey"]["prefix"], env=env)  # as `keys ls` shows it
    assert code == 0 and out.strip() == f"revoked {key_id}", err
    code, out, err = await run_cli_here("keys", "ls", "--active", "--json", env=env)
    assert code == 0, err
    assert [k["name"] for k in json.loads(out)["apiKeys"]] == ["ci"]
    code, _, err = await run_cli_here("keys", "create", "x", "--scope", "everything", env=env)
    assert code == 2 and "--scope" in err
    code, _, err = await run_cli_here("keys", "create", "x", "--expires-in-days", "400", env=env)
    assert code == 2 and err.startswith("devpynode: --expires-in-days: 400 is not 1 to 366"), err
    code, _, err = await run_cli_here("keys", "revoke", "dpn_00000000", env=env)
    assert code == 1 and "no key has that prefix" in err, err
    code, _, err = await run_cli_here("keys", "create", "", env=env)
    assert code != 0 and "name" in err and "Traceback" not in err


async def test_admins_list_and_revoke_another_accounts_keys(
    client: MeshClient, mesh: MeshServer, tmp_path: Path
) -> None:
    owner = await client.register()
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    from tests.auth.test_api_keys import create_key

    created = await create_key(client, "theirs")
    admin_email = new_email()
    await auth_of(mesh).service.create_admin(admin_email, PASSWORD, "Admin")
    code, _, err = await run_cli_here(
        "login", "--email", admin_email, "--password-stdin", env=env, stdin=PASSWORD.encode()
    )
    assert code == 0, err
    code, out, err = await run_cli_here("keys", "ls", "--user", owner.user.email, env=env)
    assert code == 0 and created.api_key.id in out, err
    code, out, err = await run_cli_here("keys", "revoke", created.api_key.id, "--user", owner.user.id, env=env)
    assert code == 0, err
    assert (await client.me()).id == owner.user.id  # the session is untouched; the key is not
