"""The account commands on a plain command line, run without Typer: `devpynode whoami` starts in grpc's time.

Typer (0.29, with pydantic inside) and Rich cost more to import than the call itself takes, and people run
`whoami`, `token` and `health` often (scripts, prompts, probes). A command line made only of one of these
commands and the options below runs `calls` directly; anything else (`--help`, a misspelt flag, a value
missing) returns None and goes through Typer, which gives the usual help and errors. The options are
those of the Typer commands in `account`, which stay the reference.
"""

from __future__ import annotations

from collections.abc import Callable

from pynode.app.cli import calls
from pynode.app.cli.common import server_address

# command -> (options taking a value, flags)
_TAKEN: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "whoami": (frozenset({"--server"}), frozenset()),
    "token": (frozenset({"--server"}), frozenset()),
    "health": (frozenset({"--server", "--service"}), frozenset()),
    "login": (frozenset({"--server", "--email"}), frozenset({"--password-stdin"})),
    "logout": (frozenset({"--server"}), frozenset({"--all"})),
}


def _parsed(args: list[str]) -> tuple[str, dict[str, str], set[str]] | None:
    if not args or args[0] not in _TAKEN:
        return None
    valued, flags = _TAKEN[args[0]]
    values: dict[str, str] = {}
    seen: set[str] = set()
    rest = args[1:]
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=")
        if name in valued:
            if not equals:
                if not rest:
                    return None
                value = rest.pop(0)
            values[name] = value
        elif word in flags:
            seen.add(word)
        else:
            return None
    if args[0] == "login" and "--email" not in values:
        return None
    return args[0], values, seen


def taken(args: list[str]) -> bool:
    """Whether `args` is a plain account command, which `run` runs."""
    return _parsed(args) is not None


def run(args: list[str]) -> int | None:
    """Run `args` when it is a plain account command; its exit status, or None to leave it to Typer."""
    parsed = _parsed(args)
    if parsed is None:
        return None
    command, values, flags = parsed
    address = server_address(values.get("--server"))
    actions: dict[str, Callable[[], int | None]] = {
        "whoami": lambda: calls.whoami(address),
        "token": lambda: calls.token(address),
        "health": lambda: calls.health(address, values.get("--service", "")),
        "login": lambda: calls.login(address, values["--email"], "--password-stdin" in flags),
        "logout": lambda: calls.logout(address, "--all" in flags),
    }
    return actions[command]() or 0
