"""devpynode backup / restore: a round trip through a backup (directory, and a bucket on the real set), after
which every account signs in and every file downloads with its SHA-256; damaged backups and occupied targets
are refused."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.app import migrate
from tests.backends import PG_ADMIN_URL, Backend, unique
from tests.client import PASSWORD, MeshClient, run_cli_here
from tests.conftest import make_settings, start_mesh


@pytest.fixture
def stores(backend: Backend, tmp_path: Path) -> Iterator[Any]:
    """Makes empty stores (a data dir, or a PostgreSQL database and a bucket) and drops them afterwards."""
    databases: list[str] = []

    def make(label: str) -> dict[str, str]:
        data_dir = tmp_path / label
        if backend.name == "embedded":
            return {"data_dir": str(data_dir)}
        name = unique("devpynode_backup_")
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        databases.append(name)
        return {
            "data_dir": str(data_dir),
            "database_url": f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}",
            "storage_url": f"s3://{unique('devpynode-backup-')}",
            "s3_endpoint_url": backend.s3_endpoint,
            "s3_access_key": "devpynode-test",
            "s3_secret_key": "devpynode-test-secret",
        }

    yield make
    for name in databases:
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(values: dict[str, str]) -> dict[str, str]:
    return {f"DEVPYNODE_{k.upper()}": v for k, v in values.items()}


async def _mesh(backend: Backend, values: dict[str, str]) -> Any:
    if "database_url" in values:
        await migrate.upgrade_async(values["database_url"])
    rest = {k: v for k, v in values.items() if k != "data_dir"}
    return await start_mesh(make_settings(backend, Path(values["data_dir"]), **rest))


async def _upload(client: MeshClient, name: str, data: bytes) -> files_pb2.File:
    def requests() -> Iterator[files_pb2.UploadFileRequest]:
        yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename=name, content_type="text/plain"))
        yield files_pb2.UploadFileRequest(chunk=data)

    response = await files_pb2_grpc.FileServiceStub(client.channel).UploadFile(requests(), metadata=client.md())
    return response.file


async def _download(client: MeshClient, file_id: str) -> bytes:
    call = files_pb2_grpc.FileServiceStub(client.channel).DownloadFile(
        files_pb2.DownloadFileRequest(file_id=file_id), metadata=client.md()
    )
    return b"".join([piece.chunk async for piece in call])


async def test_a_backup_restored_into_empty_stores_has_every_account_and_file(
    backend: Backend, stores: Any, tmp_path: Path
) -> None:
    original = stores("original")
    mesh = await _mesh(backend, original)
    accounts: dict[str, list[tuple[str, str]]] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            for i in range(3):
                user = MeshClient(channel)
                email = f"backup-{i}-{unique('')}@example.com"
                await user.register(email)
                files = []
                for j in range(2):
                    data = f"file {j} of account {i}\n".encode() * (j * 1000 + 1)
                    stored = await _upload(user, f"f{j}.txt", data)
                    assert stored.sha256 == hashlib.sha256(data).hexdigest()
                    files.append((stored.id, stored.sha256))
                accounts[email] = files
    finally:
        await mesh.stop(0)

    target = str(tmp_path / "backup")
    code, out, err = await run_cli_here("backup", target, env=_env(original))
    assert code == 0, err
    assert "6 object(s)" in out
    manifest = json.loads((Path(target) / "manifest.json").read_text())
    assert manifest["database"]["kind"] == ("sqlite" if backend.name == "embedded" else "postgresql")
    code, _, err = await run_cli_here("backup", target, env=_env(original))
    assert code != 0 and "not empty" in err  # never over an earlier backup

    empty = stores("restored")
    code, out, err = await run_cli_here("restore", target, env=_env(empty))
    assert code == 0, err
    code, _, err = await run_cli_here("restore", target, env=_env(empty))
    assert code != 0 and "already holds" in err and "--force" in err
    code, _, err = await run_cli_here("restore", target, "--force", env=_env(empty))
    assert code == 0, err

    restored = await _mesh(backend, empty)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{restored.port}") as channel:
            for email, files in accounts.items():
                user = MeshClient(channel)
                await user.login(email, PASSWORD)
                for file_id, sha256 in files:
                    assert hashlib.sha256(await _download(user, file_id)).hexdigest() == sha256
    finally:
        await restored.stop(0)

    # A damaged backup is refused before anything is written.
    damaged = next(p for p in (Path(target) / "objects").rglob("*") if p.is_file())
    damaged.write_bytes(b"not what was backed up")
    code, _, err = await run_cli_here("restore", target, "--force", env=_env(stores("third")))
    assert code != 0 and "damaged" in err


async def test_a_backup_into_a_bucket(backend: Backend, stores: Any) -> None:
    if backend.name != "real":
        pytest.skip("a bucket needs the real set's S3 server")
    real_backend = backend
    original = stores("bucket-original")
    mesh = await _mesh(real_backend, original)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            user = MeshClient(channel)
            email = f"bucket-{unique('')}@example.com"
            await user.register(email)
            stored = await _upload(user, "a.txt", b"kept in a bucket\n")
    finally:
        await mesh.stop(0)
    location = f"s3://{unique('devpynode-backups-')}/nightly/2026-12-01"
    code, _, err = await run_cli_here("backup", location, env=_env(original))
    assert code == 0, err
    empty = stores("bucket-restored")
    code, _, err = await run_cli_here("restore", location, env=_env(empty))
    assert code == 0, err
    restored = await _mesh(real_backend, empty)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{restored.port}") as channel:
            user = MeshClient(channel)
            await user.login(email, PASSWORD)
            assert await _download(user, stored.id) == b"kept in a bucket\n"
    finally:
        await restored.stop(0)
