"""The access log writes one valid JSON object per RPC, whatever the caller sent."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pynode.core.access_log import LOGGER_NAME, AccessLog


@pytest.fixture
def info_enabled() -> None:
    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)


def test_lines_are_json_even_with_hostile_values(info_enabled: None) -> None:
    out = io.StringIO()
    log = AccessLog(stream=out)
    log.record("req-1", "/devpynode.auth.v1.AuthService/Login", "OK", 1.5, "10.0.0.1", "")
    log.record("req-2", "/devpynode.auth.v1.AuthService/Login", "INVALID_ARGUMENT", 0.25, '1.2.3.4"\n', 'bad "x"\n')
    log.record("req-3", "/devpynode.auth.v1.AuthService/GetCurrentUser", "OK", 0.1, "10.0.0.1", "", 'u-1"')
    log.flush()
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert third["user"] == 'u-1"' and "user" not in first  # the caller's id on authenticated calls
    assert first["request_id"] == "req-1" and first["code"] == "OK" and "reason" not in first
    assert second["peer"] == '1.2.3.4"\n' and second["reason"] == 'bad "x"\n'
    assert second["logger"] == LOGGER_NAME and second["duration_ms"] == 0.25


def test_a_full_buffer_drops_and_counts(info_enabled: None) -> None:
    log = AccessLog(stream=io.StringIO(), max_buffer=2)
    for i in range(5):
        log.record(f"r{i}", "/m", "OK", 1.0, "p", "")
    assert log.dropped == 3


def test_disabled_below_info() -> None:
    logging.getLogger(LOGGER_NAME).setLevel(logging.WARNING)
    try:
        out = io.StringIO()
        log = AccessLog(stream=out)
        log.record("r", "/m", "OK", 1.0, "p", "")
        log.flush()
        assert out.getvalue() == ""
    finally:
        logging.getLogger(LOGGER_NAME).setLevel(logging.NOTSET)
