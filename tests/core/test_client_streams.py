"""The fix for grpcio's asyncio client-streaming writes (pynode.core.client_streams) is in place in this suite."""

from __future__ import annotations

from grpc.aio import _call

from pynode.core import client_streams


def test_the_suites_clients_keep_the_servers_status_on_a_late_write_failure() -> None:
    # tests/client.py installed it; a grpcio that fixed the bug (or changed the method) is left alone instead,
    # and then tests/files/test_uploads.py::test_an_upload_refused_before_its_end_... says whether it holds.
    client_streams.keep_delivered_status()
    assert not client_streams.flawed()
    assert client_streams.keep_delivered_status() is False  # idempotent
    if _call._StreamRequestMixin._write is client_streams._write:
        assert getattr(_call._StreamRequestMixin._write, "_devpynode_keeps_delivered_status", False)
