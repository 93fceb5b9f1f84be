"""The `devpynode` command as people use it: help, version, one-line errors, sign-in, tokens, admin tools."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from pathlib import Path

from pynode.app.server import MeshServer
from tests.client import PASSWORD, MeshClient, new_email, run_cli
from tests.conftest import one_backend

cli = run_cli


def one_line_error(code: int, err: str) -> str:
    assert code != 0 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devpynode: "), err
    return lines[0]


async def test_bare_command_prints_help_and_version_works() -> None:
    code, out, err = await cli()
    assert code == 0 and "serve" in out + err and "login" in out + err
    code, out, _ = await cli("--version")
    assert code == 0 and out.startswith("devpynode 0.")
    code, out, _ = await cli("serve", "--help")
    assert code == 0 and "DEVPYNODE_GRPC_PORT" in out  # every flag says its variable and default
    line = one_line_error(*(await cli("serve", "--no-such-flag"))[::2])
    assert "--no-such-flag" in line
    code, out, _ = await cli("users", "--help")  # the client's commands and auth's module's own
    assert code == 0 and "set-role" in out and "create-admin" in out


def test_a_client_command_loads_no_server_code() -> None:
    """`whoami` starts fast because it imports the client alone: no settings, no service, no gateway."""
    heavy = ("sqlalchemy", "envoy_data_plane", "minio", "ollama", "pydantic_settings", "pynode.app.settings")
    probe = (
        "import sys\n"
        "from pynode.app.cli import main\n"
        "main(['whoami', '--server', '127.0.0.1:1'])\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "not signed in to 127.0.0.1:1" in run.stderr, run.stderr
    assert run.stdout.strip() == "[]", run.stdout


def test_module_commands_come_from_the_modules_that_have_the_hook() -> None:
    from pynode.app import modules
    from pynode.app.cli.lazy import module_commands
    from pynode.core.module import ModuleCommands

    assert [m.name for m in modules.MODULES if isinstance(m, ModuleCommands)] == ["auth"]  # the rest have none
    assert set(module_commands()) == {"users create-admin", "keys generate"}
    from pynode.app.cli import main

    assert main(["keys", "generate"]) == 0  # a group only a module adds to


async def test_create_admin_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    for stdin, email, expected in (
        (b"short\n", "a@example.com", "password"),
        (b"password\n", "a@example.com", "password"),  # a common password
        (b"\n", "a@example.com", "no password"),
        (PASSWORD.encode() + b"\n", "not-an-email", "--email"),
    ):
        code, _, err = await cli("users", "create-admin", "--email", email, "--password-stdin", *data, stdin=stdin)
        assert expected in one_line_error(code, err)
    code, out, err = await cli(
        "users", "create-admin", "--email", "boss@example.com", "--password-stdin", *data, stdin=PASSWORD.encode()
    )
    assert code == 0 and "created admin boss@example.com" in out, err
    code, out, err = await cli(
        "users", "create-admin", "--email", "Boss@Example.com", "--password-stdin", *data, stdin=b"another one!\n"
    )
    assert code == 0 and "its password is unchanged" in out, err


async def test_migrate_names_the_database_and_the_revisions(tmp_path: Path) -> None:
    code, out, err = await cli("migrate", "--data-dir", str(tmp_path))
    assert code == 0 and "migrated" in out and "auth_0002_audit_events" in out and "devpynode.db" in out, err
    code, _, err = await cli("migrate", env={"DEVPYNODE_DATABASE_URL": "mysql://root@localhost/x"})
    assert one_line_error(code, err).startswith("devpynode: DEVPYNODE_DATABASE_URL: unsupported scheme")
    code, out, err = await cli("migrate", "--data-dir", str(tmp_path))
    heads = "ai_0001_generations, auth_0002_audit_events, chat_0004_tool_calls, files_0003_storage_usage"
    assert code == 0 and f"already at the newest revisions ({heads})" in out, err


async def test_a_busy_port_given_by_flag_is_named_by_its_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = await cli("serve", "--data-dir", str(tmp_path), "--grpc-port", port, "--metrics-port", "-1")
        assert one_line_error(code, err).startswith(f"devpynode: --grpc-port: cannot listen on 127.0.0.1:{port}")


async def test_config_check_redacts_secrets() -> None:
    code, out, err = await cli("config", "check", env={"DEVPYNODE_OPENAI_API_KEY": "sk-very-secret"})
    assert code == 0, err
    assert "sk-very-secret" not in out and "DEVPYNODE_OPENAI_API_KEY" in out and "(set, hidden)" in out
    code, _, err = await cli("config", "check", env={"DEVPYNODE_DEV_MODE": "false"})
    assert "DEVPYNODE_SERVICE_SECRET" in one_line_error(code, err)


@one_backend  # a command-line client is a gRPC client: see tests/conftest.py
async def test_login_whoami_token_logout(mesh: MeshServer, tmp_path: Path) -> None:
    async with __import__("grpc").aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
        email = new_email()
        await MeshClient(channel).register(email)
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await cli("whoami", env=env)
    assert "not signed in" in one_line_error(code, err)
    code, _, err = await cli("login", "--email", email, "--password-stdin", env=env, stdin=b"wrong password\n")
    assert "incorrect" in one_line_error(code, err)
    code, out, err = await cli("login", "--email", email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    kept = tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    code, out, err = await cli("whoami", env=env)
    assert code == 0 and email in out and "role user" in out, err
    code, token, err = await cli("token", env=env)
    assert code == 0 and token.count(".") == 2, err
    code, out, err = await cli("health", env=env)
    assert code == 0 and "SERVING" in out, err
    code, _, err = await cli("users", "list", env=env)
    assert "admin role" in one_line_error(code, err)
    code, out, err = await cli("logout", env=env)
    assert code == 0 and "signed out" in out, err
    code, _, err = await cli("whoami", env=env)
    assert "not signed in" in one_line_error(code, err)


async def test_an_unreachable_server_is_one_line() -> None:
    code, _, err = await cli("health", "--server", "127.0.0.1:1")
    assert "cannot reach the server at 127.0.0.1:1" in one_line_error(code, err)
