"""The `devpynode` command as people use it: help, version, one-line errors, sign-in, tokens, admin tools."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import grpc

from pynode.app.cli.common import rpc_error
from pynode.app.server import MeshServer
from tests.client import DEVPYNODE, PASSWORD, MeshClient, new_email, run_cli, run_cli_here
from tests.conftest import one_backend

cli = run_cli


def one_line_error(code: int, err: str) -> str:
    assert code != 0 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devpynode: "), err
    return lines[0]


async def test_bare_command_prints_help_and_version_works() -> None:
    code, out, err = await run_cli_here()
    assert code == 0 and "serve" in out + err and "login" in out + err
    code, out, _ = await run_cli_here("--version")
    assert code == 0 and out.startswith("devpynode 0.")
    code, out, _ = await run_cli_here("serve", "--help")
    assert code == 0 and "DEVPYNODE_GRPC_PORT" in out  # every flag says its variable and default
    line = one_line_error(*(await run_cli_here("serve", "--no-such-flag"))[::2])
    assert "--no-such-flag" in line
    code, out, _ = await run_cli_here("users", "--help")  # the client's commands and auth's module's own
    assert code == 0 and "set-role" in out and "create-admin" in out


def test_a_client_command_loads_no_server_code() -> None:
    """`whoami` starts fast because it imports the client alone: no settings, no service, no gateway, no Typer."""
    heavy = (
        *("sqlalchemy", "envoy_data_plane", "minio", "ollama", "pydantic_settings", "pynode.app.settings"),
        *("typer", "rich", "pydantic", "prompt_toolkit"),  # the account commands skip Typer (see cli/quick.py)
    )
    probe = (
        "import sys\n"
        "from pynode.app.cli import main\n"
        "main(['whoami', '--server', '127.0.0.1:1'])\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "not signed in to 127.0.0.1:1" in run.stderr, run.stderr
    assert run.stdout.strip() == "[]", run.stdout


def test_a_plain_account_command_ends_its_process_without_the_teardown(tmp_path: Path) -> None:
    """On the process's own command line, `whoami` exits once its output is flushed (no interpreter teardown:
    grpc's and every module's took a good part of its start); a Typer command ends the usual way."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('teardown', flush=True))\n"
        "sys.argv = ['devpynode', *sys.argv[1:]]\n"
        "from pynode.app.cli import main\n"
        "sys.exit(main())\n"
    )
    env = {**os.environ, "DEVPYNODE_CONFIG_DIR": str(tmp_path)}
    quick = subprocess.run(
        [sys.executable, "-c", probe, "whoami", "--server", "127.0.0.1:1"], capture_output=True, text=True, env=env
    )
    assert quick.returncode == 1 and "not signed in to 127.0.0.1:1" in quick.stderr, quick.stderr
    assert quick.stdout == "", quick.stdout
    typer = subprocess.run([sys.executable, "-c", probe, "--version"], capture_output=True, text=True, env=env)
    assert typer.returncode == 0 and typer.stdout.startswith("devpynode 0.") and "teardown" in typer.stdout


def test_module_commands_come_from_the_modules_that_have_the_hook() -> None:
    from pynode.app import modules
    from pynode.app.cli.lazy import module_commands
    from pynode.core.module import ModuleCommands

    assert [m.name for m in modules.MODULES if isinstance(m, ModuleCommands)] == ["auth"]  # the rest have none
    assert set(module_commands()) == {"users create-admin", "signing-keys generate"}
    from pynode.app.cli import main

    assert main(["signing-keys", "generate"]) == 0  # a group only a module adds to


async def test_create_admin_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    for stdin, email, expected in (
        (b"short\n", "a@example.com", "password"),
        (b"password\n", "a@example.com", "password"),  # a common password
        (b"\n", "a@example.com", "no password"),
        (PASSWORD.encode() + b"\n", "not-an-email", "--email"),
    ):
        code, _, err = await run_cli_here(
            "users", "create-admin", "--email", email, "--password-stdin", *data, stdin=stdin
        )
        assert expected in one_line_error(code, err)
    code, out, err = await run_cli_here(
        "users", "create-admin", "--email", "boss@example.com", "--password-stdin", *data, stdin=PASSWORD.encode()
    )
    assert code == 0 and out.startswith("created admin boss@example.com"), err  # not like an error line
    code, out, err = await run_cli_here(
        "users", "create-admin", "--email", "Boss@Example.com", "--password-stdin", *data, stdin=b"another one!\n"
    )
    assert code == 0 and out.startswith("promoted boss@example.com") and "sign in again" in out, err


async def test_migrate_names_the_database_and_the_revisions(tmp_path: Path) -> None:
    code, out, err = await run_cli_here("migrate", "--data-dir", str(tmp_path))
    assert code == 0 and "migrated" in out and "auth_0004_oidc_identities" in out and "devpynode.db" in out, err
    code, _, err = await run_cli_here("migrate", env={"DEVPYNODE_DATABASE_URL": "mysql://root@localhost/x"})
    assert one_line_error(code, err).startswith("devpynode: DEVPYNODE_DATABASE_URL: unsupported scheme")
    code, out, err = await run_cli_here("migrate", "--data-dir", str(tmp_path))
    heads = "ai_0002_api_key_usage, auth_0004_oidc_identities, chat_0004_tool_calls, files_0003_storage_usage"
    assert code == 0 and f"already at the newest revisions ({heads})" in out, err


async def test_a_busy_port_given_by_flag_is_named_by_its_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = await run_cli_here(
            "serve", "--data-dir", str(tmp_path), "--grpc-port", port, "--metrics-port", "-1"
        )
        assert one_line_error(code, err).startswith(f"devpynode: --grpc-port: cannot listen on 127.0.0.1:{port}")


async def test_config_check_redacts_secrets() -> None:
    code, out, err = await run_cli_here("config", "check", env={"DEVPYNODE_OPENAI_API_KEY": "sk-very-secret"})
    assert code == 0, err
    assert "sk-very-secret" not in out and "DEVPYNODE_OPENAI_API_KEY" in out and "(set, hidden)" in out
    code, _, err = await run_cli_here("config", "check", env={"DEVPYNODE_DEV_MODE": "false"})
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
    code, err = await _into_closed_pipe("token", env=env)
    assert code == 141 and err == "", err  # `devpynode token | true`: no BrokenPipeError traceback
    code, out, err = await cli("health", env=env)
    assert code == 0 and "SERVING" in out, err
    # The account commands in a real process each (they end it early: see __init__.main); the rest in this one.
    code, _, err = await run_cli_here("users", "list", env=env)
    assert "sign in again" in one_line_error(code, err)  # the role comes with a new token after a promotion
    code, out, err = await cli("--server", env["DEVPYNODE_SERVER"], "whoami", env={**env, "DEVPYNODE_SERVER": ""})
    assert code == 0 and email in out, err  # --server before the command
    created = new_email()
    code, _, err = await run_cli_here(
        "users", "create", "--email", created, env=env, stdin=f"{PASSWORD}\nnot it\n".encode()
    )
    assert "do not match" in one_line_error(code, err)  # piped: a second line is the repeat, and is checked
    code, out, err = await run_cli_here(
        "users", "create", "--email", created, env=env, stdin=f"{PASSWORD}\n{PASSWORD}\n".encode()
    )
    assert code == 0 and f"created {created}" in out, err
    code, out, err = await cli("logout", env=env)
    assert code == 0 and "signed out" in out, err
    code, _, err = await cli("whoami", env=env)
    assert "not signed in" in one_line_error(code, err)


async def _into_closed_pipe(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run `devpynode ARGS` with stdout a pipe whose reader is already gone; (exit status, stderr)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        process = await asyncio.create_subprocess_exec(
            *DEVPYNODE, *args, env={**os.environ, **env}, stdout=writer, stderr=asyncio.subprocess.PIPE
        )
    finally:
        os.close(writer)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, err.decode()


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_server_is_one_line() -> None:
    port = closed_port()
    code, _, err = await cli("health", "--server", f"127.0.0.1:{port}")
    assert f"cannot reach the server at 127.0.0.1:{port}" in one_line_error(code, err)


async def test_the_server_address_is_checked_wherever_it_is_given() -> None:
    port = closed_port()
    for args, env, expected in (
        (("--server", "garbage", "whoami"), {}, "devpynode: --server: 'garbage' is not host:port"),
        (("whoami", "--server=http://127.0.0.1:8080"), {}, "devpynode: --server: 'http://127.0.0.1:8080' is a URL"),
        (("files", "ls", "--server", "host:99999"), {}, "devpynode: --server: 'host:99999' is not host:port"),
        (("health",), {"DEVPYNODE_SERVER": "a b:1"}, "devpynode: DEVPYNODE_SERVER: 'a b:1' is not host:port"),
        (("--server",), {}, "devpynode: --server needs a value"),
        (("--server", f"127.0.0.1:{port}", "health"), {}, f"devpynode: cannot reach the server at 127.0.0.1:{port}"),
    ):
        code, _, err = await run_cli_here(*args, env=env)
        assert one_line_error(code, err).startswith(expected), (args, err)
    code, _, err = await run_cli_here("whoami", "--no-such-flag")  # not one `quick` takes: Typer's usual error
    assert one_line_error(code, err) == "devpynode: No such option: --no-such-flag; see `devpynode whoami --help`"
    code, _, err = await run_cli_here("login")
    assert (
        one_line_error(code, err) == "devpynode: give --email (password sign-in), or --sso / --device (single sign-on)"
    )
    code, _, err = await run_cli_here("ask", "--model")
    assert one_line_error(code, err) == "devpynode: Option '--model' requires an argument"  # no ".;"


async def test_an_http_port_is_named_as_such() -> None:
    """A port that answers HTTP/1 (a web server), and Envoy's own UNIMPLEMENTED on the browsers' port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    web = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = web.sockets[0].getsockname()[1]
    try:
        code, _, err = await run_cli_here("--server", f"127.0.0.1:{port}", "health")
        assert "answers HTTP, not gRPC" in one_line_error(code, err) and "50051" in err, err
    finally:
        web.close()
        await web.wait_closed()

    class EnvoyUnrouted(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNIMPLEMENTED

        def details(self) -> str:
            return ""

        def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("server", "envoy"),)

    assert "answers HTTP, not gRPC" in str(rpc_error(EnvoyUnrouted(), "127.0.0.1:8080"))


def test_grpc_core_logs_are_off_in_client_commands() -> None:
    probe = "import os, pynode.app.cli; print(os.environ.get('GRPC_VERBOSITY'), os.environ.get('GRPC_TRACE'))"
    env = {**os.environ, "GRPC_VERBOSITY": "debug", "GRPC_TRACE": "all"}
    for argv, expected in ((["chat"], "NONE None"), (["serve", "--help"], "debug all")):
        run = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.argv[1:] = {argv!r}; {probe}"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert run.stdout.strip() == expected, run.stderr
