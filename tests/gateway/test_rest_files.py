"""A file's bytes over plain HTTP through Envoy (`/upload/v1/files`, `/download/v1/files/{id}`, the door's
file_bytes.py), spoken as curl and httpx speak it: ranges, conditional requests, the files service's own
access rules, quota and cancellation, errors as JSON google.rpc.Status; and the transcoder's query checks."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_local_gateway import _port, _serve
from tests.gateway.test_rest import _signed_in

QUOTA = 1024 * 1024
STALL_SECONDS = 3  # the door's body time here: every other upload in this file sends its body at once
DATA = b"".join(b"%06d\n" % i for i in range(40_000))  # 280,000 bytes of text


@pytest.fixture(scope="module")
async def rest(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    port = _port()
    extra = {"DEVPYNODE_FILES_QUOTA_BYTES": str(QUOTA), "DEVPYNODE_DOOR_BODY_SECONDS": str(STALL_SECONDS)}
    process, _, _ = await _serve(tmp_path_factory.mktemp("rest-files"), port, extra)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def _upload(http: httpx.AsyncClient, base: str, auth: dict[str, str], data: bytes = DATA) -> dict[str, str]:
    answer = await http.post(
        f"{base}/upload/v1/files",
        params={"filename": "numbers été.txt"},
        content=data,
        headers={**auth, "content-type": "text/plain"},
    )
    assert answer.status_code == 200, answer.text
    file: dict[str, str] = answer.json()["file"]
    return file


async def test_a_plain_upload_then_ranged_and_conditional_downloads(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
        file = await _upload(http, rest, auth)
        assert file["sha256"] == hashlib.sha256(DATA).hexdigest() and file["contentType"].startswith("text/plain")
        url = f"{rest}/download/v1/files/{file['id']}"
        whole = await http.get(url, headers=auth)
        assert whole.status_code == 200 and whole.content == DATA
        assert whole.headers["content-type"].startswith("text/plain")
        assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-length"] == str(len(DATA))
        assert whole.headers["etag"] == f'"{file["sha256"]}"' and whole.headers["last-modified"]
        assert whole.headers["x-content-type-options"] == "nosniff"
        assert "filename*=UTF-8''numbers%20%C3%A9t%C3%A9.txt" in whole.headers["content-disposition"]
        size = len(DATA)
        for asked, start, end in (
            ("bytes=0-9", 0, 9),  # the first bytes
            ("bytes=-7", size - 7, size - 1),  # a suffix
            ("bytes=279990-", 279990, size - 1),  # open-ended
            ("bytes=100-999999", 100, size - 1),  # past the end: to the end
        ):
            part = await http.get(url, headers={**auth, "range": asked})
            assert part.status_code == 206, (asked, part.text)
            assert part.content == DATA[start : end + 1], asked
            assert part.headers["content-range"] == f"bytes {start}-{end}/{size}", asked
        several = await http.get(url, headers={**auth, "range": "bytes=0-1,5-6"})
        assert several.status_code == 200 and several.content == DATA  # ignored: the whole file
        for asked in (f"bytes={size}-", "bytes=-0"):
            refused = await http.get(url, headers={**auth, "range": asked})
            assert refused.status_code == 416, asked
            assert refused.headers["content-range"] == f"bytes */{size}"
            assert refused.json()["code"] == 3 and "range" in refused.json()["message"]
        cached = await http.get(url, headers={**auth, "if-none-match": whole.headers["etag"]})
        assert cached.status_code == 304 and cached.content == b""
        stale = await http.get(url, headers={**auth, "range": "bytes=0-1", "if-range": '"another"'})
        assert stale.status_code == 200 and stale.content == DATA
        head = await http.head(url, headers=auth)
        assert head.status_code == 200 and head.headers["content-length"] == str(size) and head.content == b""


async def test_curl_uploads_and_resumes_a_download(rest: str, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
    source = tmp_path / "numbers.txt"
    source.write_bytes(DATA)
    bearer = f"Authorization: {auth['authorization']}"

    def run(*args: str) -> str:
        done = subprocess.run([curl, "-sS", "--fail-with-body", *args], capture_output=True, check=False, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.decode()

    import json

    uploaded = await asyncio.to_thread(
        run, "-H", bearer, "-H", "Content-Type: text/plain", "--data-binary", f"@{source}",
        f"{rest}/upload/v1/files?filename=numbers.txt",
    )  # fmt: skip
    file_id = json.loads(uploaded)["file"]["id"]
    target = tmp_path / "copy.txt"
    target.write_bytes(DATA[:1000])  # a download cut short: curl -C - asks for the rest
    await asyncio.to_thread(run, "-H", bearer, "-C", "-", "-o", str(target), f"{rest}/download/v1/files/{file_id}")
    assert target.read_bytes() == DATA


async def test_the_files_services_rules_apply_and_errors_are_json_statuses(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        owner = await _signed_in(http, rest)
        other = await _signed_in(http, rest)
        file = await _upload(http, rest, owner)
        url = f"{rest}/download/v1/files/{file['id']}"
        anonymous = await http.get(url)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == 16
        assert (await http.post(f"{rest}/upload/v1/files?filename=a.txt", content=b"x")).status_code == 401
        stranger = await http.get(url, headers=other)
        assert stranger.status_code == 404 and stranger.json()["details"][0]["reason"] == "FILE_NOT_FOUND"
        missing = await http.get(f"{rest}/download/v1/files/{uuid.uuid4()}", headers=owner)
        assert missing.status_code == 404
        nameless = await http.post(f"{rest}/upload/v1/files", content=b"x", headers=owner)
        assert nameless.status_code == 400 and "filename" in nameless.json()["message"]
        twice = await http.post(f"{rest}/upload/v1/files?filename=a&filename=b", content=b"x", headers=owner)
        assert twice.status_code == 400
        unknown = await http.get(url, params={"offset": 5}, headers=owner)
        assert unknown.status_code == 400 and "Range" in unknown.json()["message"]
        # The declared size is over what is left of the quota: refused before any byte, with QuotaFailure.
        over = await http.post(
            f"{rest}/upload/v1/files?filename=big.bin", content=b"\0" * QUOTA, headers=owner, timeout=60
        )
        assert over.status_code == 429, over.text
        status = over.json()
        assert status["code"] == 8 and "quota" in status["message"]
        assert any(d["@type"].endswith("QuotaFailure") for d in status["details"])
        assert any(d.get("reason") == "QUOTA_EXCEEDED" for d in status["details"])
        # A personal API key works as the access token does.
        made = await http.post(f"{rest}/v1/api-keys", json={"name": "bytes"}, headers=owner)
        key = {"authorization": f"Bearer {made.json()['secret']}"}
        by_key = await http.get(url, headers={**key, "range": "bytes=0-6"})
        assert by_key.status_code == 206 and by_key.content == DATA[:7]


async def test_a_cancelled_upload_leaves_nothing(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
        sent = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"a" * 65536
            yield b"b" * 65536
            sent.set()
            await asyncio.sleep(3600)  # the client goes away with the upload unfinished
            yield b""

        upload = asyncio.create_task(
            http.post(f"{rest}/upload/v1/files?filename=cut.txt", content=body(), headers=auth, timeout=None)
        )
        await asyncio.wait_for(sent.wait(), 30)
        await asyncio.sleep(0.5)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        listed = await http.get(f"{rest}/v1/files", headers=auth)
        assert listed.status_code == 200 and listed.json()["files"] == []
        # Its reservation was given back: the whole quota is there for the next upload.
        for _ in range(100):
            whole = await http.post(
                f"{rest}/upload/v1/files?filename=all.bin", content=b"\0" * QUOTA, headers=auth, timeout=60
            )
            if whole.status_code == 200:
                break
            assert whole.status_code == 429, whole.text
            await asyncio.sleep(0.1)  # the cancellation is still on its way to the files service
        assert whole.status_code == 200, whole.text


async def test_a_query_cannot_rebind_what_the_path_binds(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        owner = await _signed_in(http, rest)
        mine = await _upload(http, rest, owner, b"mine\n")
        theirs = await _upload(http, rest, owner, b"theirs\n")
        path = f"{rest}/v1/files/{mine['id']}"
        plain = await http.get(path, headers=owner)
        assert plain.status_code == 200 and plain.json()["file"]["id"] == mine["id"]
        for query in (
            f"fileId={theirs['id']}",
            f"file_id={theirs['id']}",
            f"file%5Fid={theirs['id']}",  # an escaped name: the transcoder would decode it
            f"x=1&fileId={theirs['id']}",
        ):
            refused = await http.get(f"{path}:download?{query}", headers=owner)
            assert refused.status_code == 400, (query, refused.text)
            assert refused.headers["content-type"].startswith("application/json") and refused.json()["code"] == 3
        twice = await http.get(f"{rest}/v1/files?pageSize=1&pageSize=50", headers=owner)
        assert twice.status_code == 400 and twice.json()["code"] == 3
        once = await http.get(f"{rest}/v1/files?pageSize=1", headers=owner)
        assert once.status_code == 200 and len(once.json()["files"]) == 1


async def test_an_upload_whose_body_stalls_is_cut_with_408_and_stores_nothing(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
        host, port = rest.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                b"POST /upload/v1/files?filename=stalled.txt HTTP/1.1\r\nHost: gateway\r\n"
                + f"Authorization: {auth['authorization']}\r\n".encode()
                + b"Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
                + b"x" * 1000  # then nothing more: a body that stalls (Envoy passes upload bodies on unbuffered)
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(65536), 60)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"code":4' in answer and b"DEVPYNODE_DOOR_BODY_SECONDS" in answer
        listed = await http.get(f"{rest}/v1/files", headers=auth)
        assert listed.status_code == 200
        assert not [f for f in listed.json().get("files", []) if f["filename"] == "stalled.txt"]
