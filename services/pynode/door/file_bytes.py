"""A file's bytes over plain HTTP, beside the transcoded REST API (whose DownloadFile is base64 in NDJSON):
`GET /download/v1/files/{file_id}` and `POST /upload/v1/files` (Google Cloud Storage's `/download/` and
`/upload/` prefixes, so Envoy routes them here by prefix, apart from the transcoder's `/v1/` paths).

Both relay the files service's RPCs as the client (its `Authorization`: an access token or a personal API key),
so its access rules, quota, size limit, type check and scan are the gRPC ones, and bytes stream through in
chunks of at most 1 MiB: a transfer never holds a whole file.

- Download: `Range` (one range: first bytes, open-ended or suffix) answers 206 with `Content-Range`; a range
  past the end 416; several ranges are ignored (200, the whole file). `ETag` is the SHA-256 (`If-None-Match`:
  304; `If-Range` with another tag: the whole file), `Last-Modified` the upload time. The stored (detected) type
  is the `Content-Type`; `Content-Disposition` is `inline` only for types the files service marks safe to show,
  else `attachment`, with `nosniff` and a sandboxing CSP (these bytes come from the web app's origin).
- Upload: the body is the file's bytes; `?filename=` (or `Content-Disposition: attachment; filename=...`), the
  type from `?contentType=` or `Content-Type`, an optional `?sha256=`; `Content-Length` is declared as the size,
  so an upload over the quota or the limit is refused before its first byte. A client that hangs up cancels the
  upload: nothing is stored.

Errors are JSON `google.rpc.Status` with the HTTP status the transcoder gives the same gRPC code.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiohttp import web
from devpynode.files.v1 import files_pb2
from google.protobuf import json_format

from pynode.core import errors, status
from pynode.door import ranges
from pynode.door.callers import caller_of
from pynode.door.ports import Caller

DOWNLOAD_PREFIX = "/download/v1/files/"
UPLOAD_PATH = "/upload/v1/files"
PREFIXES = ("/download/", "/upload/")
CHUNK_BYTES = 1024 * 1024  # UploadFile's largest chunk
_UPLOAD_QUERY = {"filename", "contentType", "content_type", "sha256"}
# gRPC code -> HTTP status, as Envoy's transcoder (and grpc-gateway) map them.
_HTTP = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400}
_HTTP |= {12: 501, 13: 500, 14: 503, 15: 500, 16: 401}
_FILENAME = re.compile(r"""filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))""", re.IGNORECASE)


class Files(Protocol):
    """The files service's RPCs the door relays (adapters/grpc_files.py)."""

    async def get(self, caller: Caller, file_id: str) -> files_pb2.File: ...

    def download(self, caller: Caller, file_id: str, offset: int, length: int) -> AsyncIterator[bytes]: ...

    async def upload(
        self, caller: Caller, metadata: files_pb2.FileMetadata, chunks: AsyncIterator[bytes]
    ) -> files_pb2.File: ...


def status_answer(error: errors.DomainError) -> web.Response:
    """A domain error as the JSON google.rpc.Status the REST API answers, with its HTTP status."""
    rpc = status.to_status(error)
    body = json_format.MessageToDict(rpc, preserving_proto_field_name=False)
    headers = {}
    retry = getattr(error, "retry_after", None)
    if retry:
        headers["Retry-After"] = str(max(1, round(retry)))
    return web.Response(
        body=orjson.dumps(body), status=_HTTP.get(rpc.code, 500), content_type="application/json", headers=headers
    )


def _etag(file: files_pb2.File) -> str:
    return f'"{file.sha256}"'


def _disposition(file: files_pb2.File) -> str:
    """RFC 6266: an ASCII fallback name and the UTF-8 one."""
    kind = "inline" if file.inline else "attachment"
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in file.filename) or "file"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(file.filename, safe='')}"


def _matches(header: str, tag: str) -> bool:
    """`If-None-Match`: `*` or a list of tags (weak ones compare equal for a GET, RFC 9110 13.1.2)."""
    candidates = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in candidates or tag in candidates


def _modified_since(header: str, created: datetime) -> bool:
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return True  # not a date: ignored
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return created.replace(microsecond=0) > since


def _one(query: Any, name: str) -> str:
    values = query.getall(name, [])
    if len(values) > 1:
        raise errors.InvalidArgument(
            f"query parameter {name} is given {len(values)} times; give it once",
            [errors.FieldViolation(name, "given more than once", "DUPLICATE")],
        )
    return str(values[0]) if values else ""


def _upload_metadata(request: web.Request) -> files_pb2.FileMetadata:
    query = request.rel_url.query
    unknown = sorted(set(query) - _UPLOAD_QUERY)
    if unknown:
        raise errors.InvalidArgument(
            f"unknown query parameter {unknown[0]}; an upload takes filename, contentType and sha256",
            [errors.FieldViolation(unknown[0], "not a parameter of an upload", "UNKNOWN")],
        )
    filename = _one(query, "filename")
    if not filename:
        found = _FILENAME.search(request.headers.get("Content-Disposition", ""))
        if found:
            filename = found.group(1) if found.group(1) is not None else found.group(2)
    if not filename:
        raise errors.InvalidArgument(
            "an upload needs its file name: ?filename=NAME (or Content-Disposition: attachment; filename=NAME)",
            [errors.FieldViolation("filename", "is required", "REQUIRED")],
        )
    declared = _one(query, "contentType") or _one(query, "content_type")
    if not declared:
        declared = request.headers.get("Content-Type", "").split(";")[0].strip() or "application/octet-stream"
    size = request.content_length or 0  # chunked: not declared, counted as it arrives
    return files_pb2.FileMetadata(
        filename=filename, content_type=declared, size_bytes=size, sha256=_one(query, "sha256")
    )


class BodyStalled(Exception):
    """An upload's body paused longer than the door's body time between two of its pieces."""


async def _body_chunks(request: web.Request, stall: asyncio.Timeout, seconds: float) -> AsyncIterator[bytes]:
    """The body in pieces of at most CHUNK_BYTES; each piece renews `stall` (a body may take as long as it keeps
    coming, but not pause for longer than `seconds`). Once it is whole, what the service does with it (a scan)
    takes what it takes."""
    loop = asyncio.get_running_loop()
    while chunk := await request.content.read(CHUNK_BYTES):
        stall.reschedule(loop.time() + seconds)
        yield chunk
    stall.reschedule(None)


class FileBytes:
    """The download and upload handlers, on the door's aiohttp application."""

    def __init__(self, files: Files, body_seconds: float = 60.0) -> None:
        self._files = files
        self._body_seconds = body_seconds

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(DOWNLOAD_PREFIX + "{file_id}", self.download)  # and HEAD
        app.router.add_post(UPLOAD_PATH, self.upload)

    async def download(self, request: web.Request) -> web.StreamResponse:
        caller = caller_of(request)
        if request.rel_url.query:
            raise errors.InvalidArgument(
                "a download takes no query parameters; ask for part of the file with a Range header",
                [errors.FieldViolation(next(iter(request.rel_url.query)), "not a parameter here", "UNKNOWN")],
            )
        file_id = request.match_info["file_id"]
        file = await self._files.get(caller, file_id)
        created = file.created_at.ToDatetime(tzinfo=UTC)
        headers = {
            "ETag": _etag(file),
            "Last-Modified": email.utils.format_datetime(created.replace(microsecond=0), usegmt=True),
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, no-cache",  # revalidated each time: the ETag makes that a 304
        }
        none_match = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        if (none_match is not None and _matches(none_match, _etag(file))) or (
            none_match is None and since is not None and not _modified_since(since, created)
        ):
            return web.Response(status=304, headers=headers)
        wanted: ranges.ByteRange | None = None
        asked = request.headers.get("Range", "")
        if_range = request.headers.get("If-Range")
        if asked and (if_range is None or if_range.strip() == _etag(file)):
            try:
                wanted = ranges.parse(asked, file.size_bytes)
            except ranges.Unsatisfiable:
                answer = status_answer(
                    errors.InvalidArgument(
                        f"the range {asked!r} starts past the end of this {file.size_bytes}-byte file",
                        [errors.FieldViolation("Range", "not satisfiable", "RANGE_NOT_SATISFIABLE")],
                        reason="RANGE_NOT_SATISFIABLE",
                    )
                )
                answer.set_status(416)
                answer.headers["Content-Range"] = f"bytes */{file.size_bytes}"
                return answer
        headers |= {
            "Content-Type": file.content_type or "application/octet-stream",
            "Content-Disposition": _disposition(file),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
        }
        offset, length = (wanted.offset, wanted.length) if wanted else (0, file.size_bytes)
        if wanted:
            headers["Content-Range"] = wanted.content_range
        response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
        response.content_length = length
        if request.method == "HEAD" or length == 0:
            await response.prepare(request)
            await response.write_eof()
            return response
        chunks = self._files.download(caller, file_id, offset, length)
        try:
            await anext(chunks)  # the file message: a refusal (deleted since, too many downloads) raises here
            await response.prepare(request)
            async for chunk in chunks:
                await response.write(chunk)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]  # the client hung up: the RPC ends at once
        await response.write_eof()
        return response

    async def upload(self, request: web.Request) -> web.StreamResponse:
        caller = caller_of(request)
        metadata = _upload_metadata(request)
        try:
            # A stalled body cancels the upload (the service stores nothing and frees its reservation).
            async with asyncio.timeout(self._body_seconds) as stall:
                stored = await self._files.upload(caller, metadata, _body_chunks(request, stall, self._body_seconds))
        except TimeoutError:
            raise BodyStalled from None
        body = json_format.MessageToDict(files_pb2.UploadFileResponse(file=stored))
        return web.Response(body=orjson.dumps(body), status=200, content_type="application/json")
