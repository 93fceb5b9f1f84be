"""`devpynode files`: upload resumes an interrupted session, download resumes a partial file and checks it."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.app.server import MeshServer
from tests.client import PASSWORD, MeshClient, new_email, run_cli_here
from tests.conftest import one_backend

pytestmark = one_backend  # a command-line client is a gRPC client: see tests/conftest.py


MIB = 1024 * 1024


async def test_files_commands_resume_both_ways(client: MeshClient, mesh: MeshServer, tmp_path: Path) -> None:
    email = new_email()
    await client.register(email)
    server = f"127.0.0.1:{mesh.port}"
    config = tmp_path / "config"
    env = {"DEVPYNODE_SERVER": server, "DEVPYNODE_CONFIG_DIR": str(config)}
    code, _, err = await run_cli_here("login", "--email", email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    data = b"\x00devpynode cli test\x00" + os.urandom(2 * MIB + 77)
    source = tmp_path / "report.bin"
    source.write_bytes(data)

    # An upload that stopped after one part: the session exists and the CLI remembers it.
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    meta = files_pb2.FileMetadata(
        filename="report.bin",
        content_type="application/octet-stream",
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    session = (
        await stub.CreateUploadSession(files_pb2.CreateUploadSessionRequest(metadata=meta), metadata=client.md())
    ).session
    await stub.UploadPart(
        files_pb2.UploadPartRequest(session_id=session.id, offset=0, data=data[:MIB]), metadata=client.md()
    )
    stat = source.stat()
    identity = f"{server}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    (config / "uploads.json").write_text(json.dumps({identity: session.id}))

    code, out, err = await run_cli_here("files", "upload", str(source), env=env)
    assert code == 0, err
    header, uploaded = out.splitlines()  # piped: a header, then a line per file, as `files ls` prints
    assert header == "id\tname\ttype\tbytes\tcreated"
    file_id = uploaded.split("\t")[0]
    resumed = await stub.GetUploadSession(
        files_pb2.GetUploadSessionRequest(session_id=session.id), metadata=client.md()
    )
    assert resumed.session.state == files_pb2.UPLOAD_SESSION_STATE_COMPLETED and resumed.session.file_id == file_id
    assert json.loads((config / "uploads.json").read_text()) == {}

    code, out, err = await run_cli_here("files", "ls", env=env)
    assert code == 0 and out.splitlines() == [header, uploaded], err
    assert f"{file_id}\treport.bin\tapplication/octet-stream\t{len(data)}\t" in uploaded
    created = uploaded.split("\t")[4]  # to the second, with the zone: 2026-12-03 12:05:16 UTC
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", created), created

    terminal = {**env, "TTY_COMPATIBLE": "1", "COLUMNS": "200"}  # Rich draws its table as on a terminal
    code, out, err = await run_cli_here("files", "ls", env=terminal)
    assert code == 0 and "size" in out and "2.0 MiB" in out and str(len(data)) not in out, out

    target = tmp_path / "copy.bin"
    (tmp_path / "copy.bin.part").write_bytes(data[:12345])  # an interrupted download
    code, _, err = await run_cli_here("files", "download", file_id, "-o", str(target), env=env)
    assert code == 0, err
    assert target.read_bytes() == data and not (tmp_path / "copy.bin.part").exists()
    target.write_bytes(b"my precious notes")  # a file already there is kept, unless --force says otherwise
    code, _, err = await run_cli_here("files", "download", file_id, "-o", str(target), env=env)
    assert code == 1 and "already exists" in err and target.read_bytes() == b"my precious notes", err
    code, _, err = await run_cli_here("files", "download", file_id, "-o", str(target), "--force", env=env)
    assert code == 0 and target.read_bytes() == data, err

    (tmp_path / "bad.bin.part").write_bytes(b"not the same bytes")
    code, _, err = await run_cli_here("files", "download", file_id, "-o", str(tmp_path / "bad.bin"), env=env)
    assert code != 0 and "SHA-256" in err and "Traceback" not in err
    assert not (tmp_path / "bad.bin.part").exists()

    code, out, err = await run_cli_here("files", "rm", file_id, env=env)
    assert code == 0, err
    code, out, err = await run_cli_here("files", "rm", file_id, env=env)
    assert code != 0 and "no file" in err
