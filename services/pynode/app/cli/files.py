"""`devpynode files upload | download | ls | rm`: files from a terminal, resumable both ways.

Uploads go through upload sessions; the session of a file being uploaded is remembered (in the config
directory, by path, size and modification time), so running `upload` again after an interruption resumes
where the server says it stopped. Downloads write `NAME.part`, resume from its size, check the SHA-256 and
then rename it.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from pynode.app.cli import credentials
from pynode.app.cli.account import print_table
from pynode.app.cli.calls import bearer, channel
from pynode.app.cli.common import fail, human_size, local_time, server_address
from pynode.app.cli.options import Server

files = typer.Typer(help="Your files: upload, download, list, delete.", no_args_is_help=True)
TIMEOUT_SECONDS = 60.0
_err = Console(stderr=True)


class _Speed(TransferSpeedColumn):
    """The transfer speed, once there is one (a small file is done before: no "?")."""

    def render(self, task: Task) -> Text:
        return Text("") if task.speed is None else super().render(task)


class _Remaining(TimeRemainingColumn):
    """The time left, while it is known and not over."""

    def render(self, task: Task) -> Text:
        return Text("") if task.finished or task.time_remaining is None else super().render(task)


@contextmanager
def _progress() -> Iterator[Progress]:
    """Progress bars on a terminal's stderr, gone when done (the result is printed after them)."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), _Speed(), _Remaining())
    with Progress(*columns, console=_err, disable=not sys.stderr.isatty(), transient=True) as progress:
        yield progress


_HEADERS = ("id", "name", "type", "bytes", "created")
_FOR_PEOPLE: dict[int, tuple[str, Callable[[str], str]]] = {3: ("size", lambda cell: human_size(int(cell)))}


def _row(f: files_pb2.File) -> tuple[str, ...]:
    return (f.id, f.filename, f.content_type, str(f.size_bytes), local_time(f.created_at))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _state_file() -> Path:
    return credentials.config_dir() / "uploads.json"


def _load_state() -> dict[str, Any]:
    try:
        loaded = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _save_state(state: dict[str, Any]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def _identity(server: str, path: Path) -> str:
    stat = path.stat()
    return f"{server}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _resumable(stub: Any, metadata: Any, session_id: str | None) -> Any:
    """The session to continue, or None when it is gone or finished."""
    if not session_id:
        return None
    try:
        found = stub.GetUploadSession(
            files_pb2.GetUploadSessionRequest(session_id=session_id), metadata=metadata, timeout=TIMEOUT_SECONDS
        ).session
    except grpc.RpcError:
        return None
    return found if found.state == files_pb2.UPLOAD_SESSION_STATE_ACTIVE else None


def _upload_one(stub: Any, address: str, path: Path, progress: Progress) -> files_pb2.File:
    metadata = bearer(address)
    size = path.stat().st_size
    key = _identity(address, path)
    state = _load_state()
    session = _resumable(stub, metadata, state.get(key))
    if session is None:
        guessed, _ = mimetypes.guess_type(path.name)  # a hint: the server detects the type from the bytes
        declared = files_pb2.FileMetadata(
            filename=path.name,
            content_type=guessed or "application/octet-stream",
            size_bytes=size,
            sha256=_sha256(path),
        )
        session = stub.CreateUploadSession(
            files_pb2.CreateUploadSessionRequest(metadata=declared), metadata=metadata, timeout=TIMEOUT_SECONDS
        ).session
        state[key] = session.id
        _save_state(state)
    offset = session.received_bytes
    task = progress.add_task(path.name, total=size, completed=offset)
    with path.open("rb") as handle:
        handle.seek(offset)
        while offset < size:
            data = handle.read(session.part_size or 1024 * 1024)
            session = stub.UploadPart(
                files_pb2.UploadPartRequest(session_id=session.id, offset=offset, data=data),
                metadata=metadata,
                timeout=TIMEOUT_SECONDS,
            ).session
            offset = session.received_bytes
            progress.update(task, completed=offset)
    done: files_pb2.File = stub.CompleteUploadSession(
        files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=metadata, timeout=TIMEOUT_SECONDS
    ).file
    state = _load_state()
    state.pop(key, None)
    _save_state(state)
    return done


@files.command("upload")
def upload(
    paths: Annotated[list[Path], typer.Argument(help="Files to upload", exists=True, dir_okay=False, readable=True)],
    server: Server = None,
) -> None:
    """Upload files; run it again after an interruption and it resumes where it stopped."""
    address = server_address(server)
    rows: list[tuple[str, ...]] = []
    with channel(address) as opened, _progress() as progress:
        stub = files_pb2_grpc.FileServiceStub(opened)
        for path in paths:
            rows.append(_row(_upload_one(stub, address, path, progress)))
    print_table(_HEADERS, rows, _FOR_PEOPLE)


@files.command("download")
def download(
    file_id: Annotated[str, typer.Argument(help="The file's id")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write it (default: its name)")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace a file that is already there")] = False,
    server: Server = None,
) -> None:
    """Download a file; an interrupted download resumes from the bytes already on disk, and the SHA-256 is checked.
    An existing file of the same name is kept unless --force says to replace it."""
    address = server_address(server)
    metadata = bearer(address)
    with channel(address) as opened, _progress() as progress:
        stub = files_pb2_grpc.FileServiceStub(opened)
        info = stub.GetFile(files_pb2.GetFileRequest(file_id=file_id), metadata=metadata, timeout=TIMEOUT_SECONDS)
        # Only the stored name's last part: the name is the uploader's, and must not choose a directory here.
        target = output or Path(Path(info.file.filename).name or file_id)
        if target.exists() and not force:
            fail(f"{target} already exists: --output NAME writes elsewhere, --force replaces it", 1)
        partial = target.with_name(target.name + ".part")
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > info.file.size_bytes:
            partial.unlink()
            offset = 0
        task = progress.add_task(target.name, total=info.file.size_bytes, completed=offset)
        with partial.open("ab") as handle:
            if offset < info.file.size_bytes:
                call = stub.DownloadFile(
                    files_pb2.DownloadFileRequest(file_id=file_id, offset=offset), metadata=metadata
                )
                for piece in call:
                    if piece.WhichOneof("data") == "chunk":
                        handle.write(piece.chunk)
                        offset += len(piece.chunk)
                        progress.update(task, completed=offset)
        if _sha256(partial) != info.file.sha256:
            partial.unlink()
            fail(f"{target}: the downloaded bytes do not match the file's SHA-256; run the command again")
        os.replace(partial, target)
    print(f"{target}\t{info.file.size_bytes}")


@files.command("ls")
def ls(server: Server = None) -> None:
    """List your files, newest first."""
    address = server_address(server)
    rows: list[tuple[str, ...]] = []
    with channel(address) as opened:
        stub = files_pb2_grpc.FileServiceStub(opened)
        page = ""
        while True:
            response = stub.ListFiles(
                files_pb2.ListFilesRequest(page_size=100, page_token=page),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
            rows.extend(_row(f) for f in response.files)
            page = response.next_page_token
            if not page:
                break
    print_table(_HEADERS, rows, _FOR_PEOPLE)


@files.command("rm")
def rm(file_id: Annotated[str, typer.Argument(help="The file's id")], server: Server = None) -> None:
    """Delete a file (its bytes and its record)."""
    address = server_address(server)
    with channel(address) as opened:
        files_pb2_grpc.FileServiceStub(opened).DeleteFile(
            files_pb2.DeleteFileRequest(file_id=file_id), metadata=bearer(address), timeout=TIMEOUT_SECONDS
        )
    print(f"deleted {file_id}")
