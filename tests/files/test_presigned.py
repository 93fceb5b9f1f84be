"""Presigned download URLs on a real S3 server: they expire, and any change to one voids its signature."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc
import httpx
import pytest
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from tests.backends import Backend
from tests.client import MeshClient
from tests.conftest import make_settings, start_mesh

BODY = b"a report only its owner may fetch\n"


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _upload_and_sign(client: MeshClient) -> str:
    stub = files_pb2_grpc.FileServiceStub(client.channel)

    async def requests() -> AsyncIterator[files_pb2.UploadFileRequest]:
        metadata = files_pb2.FileMetadata(filename="report.txt", content_type="text/plain")
        yield files_pb2.UploadFileRequest(metadata=metadata)
        yield files_pb2.UploadFileRequest(chunk=BODY)

    stored = (await stub.UploadFile(requests(), metadata=client.md())).file
    answer = await stub.GetDownloadUrl(files_pb2.GetDownloadUrlRequest(file_id=stored.id), metadata=client.md())
    return answer.url


async def test_presigned_urls_expire_and_refuse_any_alteration(backend: Backend, tmp_path: Path) -> None:
    if not backend.s3_endpoint:
        pytest.skip("presigned URLs exist on S3 storage only (the real backend set)")
    mesh = await start_mesh(make_settings(backend, tmp_path, files_url_seconds=2))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            client = MeshClient(channel)
            await client.register()
            url = await _upload_and_sign(client)
            async with httpx.AsyncClient() as http:
                assert (await http.get(url)).content == BODY
                signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
                # The replacement is chosen against the character it replaces, so the signature always changes.
                flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
                altered = {
                    "signature": _with_query(url, **{"X-Amz-Signature": flipped}),
                    "longer lifetime": _with_query(url, **{"X-Amz-Expires": "604800"}),
                    "inline display": _with_query(url, **{"response-content-disposition": "inline"}),
                    "unsigned": urlunsplit(urlsplit(url)._replace(query="")),
                }
                for what, forged in altered.items():
                    refused = await http.get(forged)
                    assert refused.status_code == 403, f"{what}: {refused.status_code}"
                await asyncio.sleep(3)  # past the 2 s lifetime (S3 counts whole seconds)
                expired = await http.get(url)
                assert expired.status_code == 403, expired.text
    finally:
        await mesh.stop(0)
