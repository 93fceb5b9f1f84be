"""`devpynode login --sso [PROVIDER]` and `--device`: single sign-on from a terminal.

The loopback flow (RFC 8252): the CLI listens on 127.0.0.1 at a port the system picks, asks the server to start
a flow for it, opens the browser (and prints the URL, for a browser elsewhere on this machine), takes the query
from the one request its listener gets, and finishes the flow. The binding secret never leaves this process
but as its hash, so a redirect planted by someone else cannot land in this login. The device flow (RFC 8628)
serves machines without a browser: it prints a code to enter anywhere and waits for the server's answer.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import queue
import threading
import time
import webbrowser
from typing import Any

from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.app.cli import credentials
from pynode.app.cli.calls import TIMEOUT_SECONDS, channel, kept
from pynode.app.cli.common import fail

FLOW_SECONDS = 600.0  # the server keeps a flow this long
_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Dev-PyNode</title>"
    b"<p>Sign-in received: you can close this tab and go back to the terminal.</p>"
)


class _Callback(http.server.BaseHTTPRequestHandler):
    """Takes the first GET /callback's query; everything else is 404."""

    answers: queue.Queue[str]

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path != "/callback":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("cache-control", "no-store")
        self.send_header("referrer-policy", "no-referrer")  # the code must not travel on in a Referer
        self.end_headers()
        self.wfile.write(_PAGE)
        self.answers.put(query)

    def log_message(self, format: str, *args: Any) -> None:
        return  # no request lines (with the code in them) on the terminal


def _provider(stub: auth_pb2_grpc.AuthServiceStub, wanted: str | None, device: bool) -> str:
    listed = stub.ListSignInProviders(auth_pb2.ListSignInProvidersRequest(), timeout=TIMEOUT_SECONDS).providers
    usable = [p for p in listed if (p.device_flow if device else p.loopback)]
    if wanted:
        if not any(p.id == wanted for p in listed):
            names = ", ".join(p.id for p in listed) or "none"
            fail(f"no sign-in provider {wanted!r} on this server (configured: {names})")
        return wanted
    if len(usable) == 1:
        return usable[0].id
    if not usable:
        fail("this server has no single sign-on provider for the " + ("device flow" if device else "CLI"))
    fail("several sign-in providers; name one: " + ", ".join(p.id for p in usable))


def login_sso(address: str, provider: str | None, open_browser: bool = True) -> None:
    """The loopback flow."""
    answers: queue.Queue[str] = queue.Queue()
    handler = type("Callback", (_Callback,), {"answers": answers})
    listener = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=listener.serve_forever, name="sso-callback", daemon=True)
    thread.start()
    secret = os.urandom(32)
    try:
        with channel(address) as opened:
            stub = auth_pb2_grpc.AuthServiceStub(opened)
            chosen = _provider(stub, provider, device=False)
            flow = stub.StartOidcLogin(
                auth_pb2.StartOidcLoginRequest(
                    provider=chosen,
                    client=auth_pb2.OIDC_CLIENT_KIND_CLI_LOOPBACK,
                    loopback_port=listener.server_address[1],
                    binding_sha256=hashlib.sha256(secret).digest(),
                ),
                timeout=TIMEOUT_SECONDS,
            )
            print(f"opening your browser to sign in with {chosen}; if it does not open, visit:", flush=True)
            print(flow.authorization_url, flush=True)
            if open_browser:
                webbrowser.open(flow.authorization_url)
            try:
                query = answers.get(timeout=FLOW_SECONDS)
            except queue.Empty:
                fail("no answer from the browser within 10 minutes; run `devpynode login --sso` again")
            response = stub.CompleteOidcLogin(
                auth_pb2.CompleteOidcLoginRequest(callback_query=query, binding=secret), timeout=TIMEOUT_SECONDS
            )
    finally:
        listener.shutdown()
        listener.server_close()
    _signed_in(address, response)


def login_device(address: str, provider: str | None) -> None:
    """The device flow."""
    with channel(address) as opened:
        stub = auth_pb2_grpc.AuthServiceStub(opened)
        chosen = _provider(stub, provider, device=True)
        started = stub.StartOidcDeviceLogin(
            auth_pb2.StartOidcDeviceLoginRequest(provider=chosen), timeout=TIMEOUT_SECONDS
        )
        print(f"to sign in with {chosen}, open {started.verification_uri} and enter the code {started.user_code}")
        if started.verification_uri_complete:
            print(f"(or open {started.verification_uri_complete})")
        print("waiting for the sign-in...", flush=True)
        left = max(started.expires_at.seconds - time.time(), 1.0) + 30.0
        for event in stub.AwaitOidcDeviceLogin(
            auth_pb2.AwaitOidcDeviceLoginRequest(flow_id=started.flow_id), timeout=left
        ):
            if event.HasField("completed"):
                _signed_in(address, event.completed)
                return
    fail("the server ended the device sign-in without an answer; run `devpynode login --device` again")


def _signed_in(address: str, response: auth_pb2.CompleteOidcLoginResponse) -> None:
    path = credentials.save(kept(address, response.user.email, response.tokens))
    created = " (new account)" if response.account_created else ""
    print(f"signed in to {address} as {response.user.email}{created} (tokens kept in {path})")
