"""Who called the door: the client's credentials and address headers, passed on as they came (the services'
edges judge them)."""

from __future__ import annotations

import re

from aiohttp import web

from pynode.core import errors
from pynode.door.ports import Caller

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]{1,8192}$")


def caller_of(request: web.Request) -> Caller:
    """The client's credentials and address headers, passed on as they came; the router's edge judges them."""
    authorization = request.headers.get("Authorization", "")
    if not authorization:
        raise errors.Unauthenticated(
            "You didn't provide an API key. Send `Authorization: Bearer <key>` with a personal API key or an "
            "access token (`devpynode token`)."
        )
    if not _PRINTABLE.match(authorization):
        raise errors.Unauthenticated("The Authorization header is malformed; send `Authorization: Bearer <key>`.")
    supplied = request.headers.get("X-Request-Id", "")
    forwarded = request.headers.get("X-Forwarded-For", "")
    gateway = request.headers.get("X-Devpynode-Gateway", "")
    return Caller(
        authorization,
        supplied if _REQUEST_ID.match(supplied) else "",
        forwarded if _PRINTABLE.match(forwarded) else "",
        gateway if _PRINTABLE.match(gateway) else "",
    )
