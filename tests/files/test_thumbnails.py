"""Thumbnails: bounded long side, EXIF orientation applied, metadata gone, decompression bombs refused."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from PIL import Image

from tests.client import MeshClient, fails


def _jpeg_with_exif(width: int, height: int, orientation: int) -> bytes:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "SecretCam"  # Make: metadata that must not survive
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), comment=b"private comment")
    return out.getvalue()


def _requests(name: str, data: bytes, declared: str) -> Any:
    yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename=name, content_type=declared))
    yield files_pb2.UploadFileRequest(chunk=data)


async def _thumbnail(client: MeshClient, file_id: str) -> bytes:
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    request = files_pb2.DownloadFileRequest(file_id=file_id, variant=files_pb2.FILE_VARIANT_THUMBNAIL)
    pieces = [p async for p in stub.DownloadFile(request, metadata=client.md())]
    return b"".join(p.chunk for p in pieces[1:])


async def test_thumbnails_are_oriented_bounded_and_stripped(client: MeshClient) -> None:
    await client.register()
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    photo = _jpeg_with_exif(1200, 600, orientation=6)  # stored landscape, shown rotated: portrait
    stored = (await stub.UploadFile(_requests("photo.jpg", photo, "image/jpeg"), metadata=client.md())).file
    assert stored.content_type == "image/jpeg" and stored.has_thumbnail and stored.inline
    thumb = Image.open(io.BytesIO(await _thumbnail(client, stored.id)))
    assert thumb.format == "WEBP" and thumb.size == (128, 256)  # long side 256, orientation applied
    assert not thumb.getexif() and "exif" not in thumb.info and "icc_profile" not in thumb.info
    text = (await stub.UploadFile(_requests("a.txt", b"no image here\n", "text/plain"), metadata=client.md())).file
    missing = await fails(_thumbnail(client, text.id))
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.reason == "THUMBNAIL_NOT_FOUND"


async def test_a_decompression_bomb_is_refused_and_nothing_is_stored(strict: Any) -> None:
    client: MeshClient = await strict(files_max_image_pixels=1_000_000)
    await client.register()
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    out = io.BytesIO()
    Image.new("1", (4000, 4000)).save(out, "PNG")  # 16 megapixels in a few kilobytes
    bomb = out.getvalue()
    assert len(bomb) < 64 * 1024
    error = await fails(stub.UploadFile(_requests("bomb.png", bomb, "image/png"), metadata=client.md()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "IMAGE_TOO_LARGE"
    assert not (await stub.ListFiles(files_pb2.ListFilesRequest(), metadata=client.md())).files


def _png16(width: int, height: int) -> bytes:
    """An RGB PNG of 16 bits a sample, all black: a few KB that Pillow decodes to width x height x 4 bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = bytes(1 + width * 6)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


async def test_an_image_under_the_pixel_limit_that_decodes_too_large_is_refused(strict: Any) -> None:
    """The pixel count alone lets a 16-bit image through at several times the memory: decoded bytes count."""
    client: MeshClient = await strict(files_max_image_bytes=2 * 1024 * 1024)
    await client.register()
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    bomb = _png16(1000, 1000)  # 1 Mpx, far under the 50 Mpx limit; 4 MB decoded
    error = await fails(stub.UploadFile(_requests("deep.png", bomb, "image/png"), metadata=client.md()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "IMAGE_TOO_LARGE"
    small = (await stub.UploadFile(_requests("ok.png", _png16(500, 500), "image/png"), metadata=client.md())).file
    assert small.has_thumbnail  # 1 MB decoded: within the bound
