"""Auth's own `devpynode` commands (its module's `cli_commands`): `users create-admin`, run on the server's
machine against the database, for the first administrator."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pynode.core.commands import CommandHost
from pynode.core.contract import is_email


def commands(host: CommandHost) -> dict[str, Callable[..., Any]]:
    """The commands, wired to the CLI's host."""

    def signing_keys_generate() -> None:
        """Print a new Ed25519 private key (PEM) for DEVPYNODE_AUTH_PRIVATE_KEYS."""
        from pynode.auth.keys import generate_pem

        print(generate_pem(), end="")

    def create_admin(
        email: Annotated[str, typer.Option(help="The administrator's e-mail address")],
        display_name: Annotated[str, typer.Option(help="Name shown for a new account")] = "Administrator",
        password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin instead of prompting")] = False,
        data_dir: Annotated[
            Path | None,
            typer.Option("--data-dir", help="Where embedded data lives [env DEVPYNODE_DATA_DIR; ./.devpynode]"),
        ] = None,
    ) -> None:
        """Create the first administrator in the database (or promote an existing account; its password stays)."""
        from pynode.auth.module import AuthComponents
        from pynode.auth.service import normalise_email

        if not is_email(email):
            host.fail(f"--email: {email!r} is not an e-mail address like name@example.com", 2)

        async def work(parts: Any, shared_stores: bool) -> str:
            assert isinstance(parts, AuthComponents)
            existing = await parts.service.users.by_email(normalise_email(email))
            if existing is not None:
                if password_stdin:
                    sys.stdin.read()  # never left unread in a pipe; and never applied
                user = await parts.service.create_admin(email, None, display_name)
                # A token carries the role it was issued with: the admin role comes with the next sign-in.
                return (
                    f"promoted {user.email} ({user.id}) to admin; its password is unchanged; sign in again "
                    "(`devpynode login`) for a token with the admin role"
                )
            password = host.read_password(password_stdin, confirm=True)
            user = await parts.service.create_admin(email, password, display_name)
            return f"created admin {user.email} ({user.id}); sign in with `devpynode login --email {user.email}`"

        host.run("auth", data_dir, work)

    return {"users create-admin": create_admin, "signing-keys generate": signing_keys_generate}
