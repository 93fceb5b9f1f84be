"""What a test sees of a mesh's file storage, local disk or S3: visible objects, staged parts, open uploads."""

from __future__ import annotations

import uuid
from typing import Any

from pynode.app.server import MeshServer
from pynode.files.adapters.local_store import LocalBlobStore
from pynode.files.adapters.s3_store import S3BlobStore
from pynode.files.module import FilesComponents


def _parts(mesh: MeshServer) -> FilesComponents:
    parts = mesh.platform.component("files")
    assert isinstance(parts, FilesComponents)
    return parts


def is_s3(mesh: MeshServer) -> bool:
    return isinstance(_parts(mesh).service.store, S3BlobStore)


def stored_objects(mesh: MeshServer) -> list[str]:
    """Keys of every visible object (neither an upload in progress nor a session's staged parts)."""
    store: Any = _parts(mesh).service.store
    if isinstance(store, LocalBlobStore):
        root = store.root
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not {".sessions", ".partial"} & set(p.relative_to(root).parts)
        )
    assert isinstance(store, S3BlobStore)
    s3 = store.objects
    names = (o.object_name or "" for o in s3.client.list_objects(s3.bucket, recursive=True))
    return sorted(n for n in names if not n.startswith(".sessions/"))


def staged(mesh: MeshServer, session_id: str) -> bool:
    """Whether an upload session has bytes staged."""
    store: Any = _parts(mesh).service.store
    if isinstance(store, LocalBlobStore):
        return (store.root / ".sessions" / uuid.UUID(session_id).hex).exists()
    s3 = store.objects
    prefix = f".sessions/{uuid.UUID(session_id).hex}/"
    return any(True for _ in s3.client.list_objects(s3.bucket, prefix=prefix, recursive=True))


def open_uploads(mesh: MeshServer) -> int:
    """Multipart uploads begun and neither completed nor aborted (S3; 0 on local disk)."""
    store: Any = _parts(mesh).service.store
    if not isinstance(store, S3BlobStore):
        return 0
    s3 = store.objects
    listed = s3.client._list_multipart_uploads(s3.bucket)
    return len(listed.uploads)
