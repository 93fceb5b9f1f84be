"""Typer options several commands share: the server's address, the data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Server = Annotated[
    str | None, typer.Option("--server", help="host:port of the mesh [env DEVPYNODE_SERVER; 127.0.0.1:50051]")
]

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where embedded data lives [env DEVPYNODE_DATA_DIR; ./.devpynode]")
]
