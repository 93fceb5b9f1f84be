"""The gateway's refusals of REST queries that would override the path or repeat a scalar (gateway_rest.py),
checked as Envoy matches them: each regex against the whole original path, with RE2's syntax (Python's `re`
reads these patterns the same way: no back-references, no look-arounds)."""

from __future__ import annotations

import re

import pytest
from devpynode.files.v1 import files_pb2

from pynode.app.gateway_rest import _ESCAPED_NAME, _refused_queries

DOWNLOAD = files_pb2.DESCRIPTOR.services_by_name["FileService"].methods_by_name["DownloadFile"]
LIST = files_pb2.DESCRIPTOR.services_by_name["FileService"].methods_by_name["ListFiles"]


def _refused(method: object, path: str) -> bool:
    return any(re.fullmatch(regex, path) for regex in _refused_queries(method))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/A:download?fileId=B",
        "/v1/files/A:download?file_id=B",
        "/v1/files/A:download?offset=1&fileId=B",
        "/v1/files/A:download?fileId",
        "/v1/files/A:download?offset=1&offset=2",
        "/v1/files/A:download?offset=1&length=3&offset=2",
    ],
)
def test_a_query_that_rebinds_the_path_or_repeats_a_scalar_is_refused(path: str) -> None:
    assert _refused(DOWNLOAD, path)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/A:download",
        "/v1/files/A:download?offset=1&length=2",
        "/v1/files/A:download?offsetx=1&offset=2",  # another name (the transcoder refuses it as unknown)
        "/v1/files/A:download?x=fileId",  # a value, not a name
    ],
)
def test_other_queries_pass(path: str) -> None:
    assert not _refused(DOWNLOAD, path)


def test_page_size_twice_is_refused_once_is_not() -> None:
    assert _refused(LIST, "/v1/files?pageSize=1&page_size=2")
    assert not _refused(LIST, "/v1/files?pageSize=1&pageToken=x")


def test_a_percent_escaped_name_is_refused_an_escaped_value_is_not() -> None:
    assert re.fullmatch(_ESCAPED_NAME, "/v1/files/A:download?file%5Fid=B")
    assert not re.fullmatch(_ESCAPED_NAME, "/v1/files?contentType=image%2Fpng")
