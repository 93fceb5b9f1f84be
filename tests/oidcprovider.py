"""A real OpenID provider on loopback for the tests: panva's `oidc-provider` (npm) under Node, and a headless
"browser" that signs in on its real login and consent pages with form posts.

`tests/oidc/provider.mjs` is the provider; its npm package lives in `tests/oidc/node_modules` (`npm ci --prefix
tests/oidc`, which scripts/test runs). The provider enforces PKCE S256, single-use codes, RFC 9207 `iss`, and the
device flow, and matches loopback redirects on any port for its native client.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent / "oidc"
WEB_CLIENT = "devpynode-web"
WEB_SECRET = "web-secret-" + "x" * 32
CLI_CLIENT = "devpynode-cli"
OTHER_CLIENT = "another-app"  # a second application at the same provider: its codes and tokens are not ours
OTHER_SECRET = "other-secret-" + "y" * 32
WEB_REDIRECT = "http://localhost:8080/oidc/callback"
OTHER_REDIRECT = "http://127.0.0.1:9/other/callback"

# The provider's accounts: id -> claims. `groups` feeds the role mapping tests.
USERS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@corp.example", "email_verified": True, "name": "Alice", "groups": ["staff"]},
    "root": {"email": "root@corp.example", "email_verified": True, "name": "Root", "groups": ["platform-admins"]},
    "mallory": {"email": "admin@corp.example", "email_verified": False, "name": "Mallory", "groups": []},
    "noverify": {"email": "noverify@corp.example", "name": "No Verified Claim", "groups": []},
    "stringy": {"email": "stringy@corp.example", "email_verified": True, "groups": "platform-admins"},
    "outsider": {"email": "outsider@elsewhere.example", "email_verified": True, "groups": []},
}


def node_available() -> str:
    """Why the provider cannot run here, or "" when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return "tests/oidc/node_modules is missing: npm ci --prefix tests/oidc"
    return ""


def _rsa_jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Provider:
    """A running provider: its issuer, process and log."""

    issuer: str
    process: subprocess.Popen[bytes]
    log: Path
    signing_key: dict[str, Any]  # the provider's private JWK: tests forge tokens the provider could have signed
    extra_web_redirects: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def settings(self, provider_id: str = "corp", **overrides: Any) -> dict[str, Any]:
        """A provider entry for DEVPYNODE_AUTH_OIDC_PROVIDERS pointing at this provider."""
        entry: dict[str, Any] = {
            "id": provider_id,
            "issuer": self.issuer,
            "display_name": "Corp SSO",
            "client_id": WEB_CLIENT,
            "client_secret": WEB_SECRET,
            "cli_client_id": CLI_CLIENT,
            "scopes": ["openid", "email", "profile", "groups"],
        }
        entry.update(overrides)
        return entry


def start(workdir: Path, *, web_redirects: tuple[str, ...] = (), timeout: float = 30.0) -> Provider:
    """Start the provider with the test clients and accounts; wait until it announces its issuer."""
    port = free_port()
    key = _rsa_jwk("test-key-1")
    config = {
        "port": port,
        "cookie_key": secrets.token_hex(32),
        "jwks": [key],
        "users": USERS,
        "clients": [
            {
                "client_id": WEB_CLIENT,
                "client_secret": WEB_SECRET,
                "redirect_uris": [WEB_REDIRECT, *web_redirects],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            },
            {
                "client_id": CLI_CLIENT,
                "application_type": "native",
                "token_endpoint_auth_method": "none",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
                "response_types": ["code"],
            },
            {
                "client_id": OTHER_CLIENT,
                "client_secret": OTHER_SECRET,
                "redirect_uris": [OTHER_REDIRECT],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            },
        ],
    }
    log = workdir / "oidc-provider.log"
    out = log.open("wb")
    process = subprocess.Popen(
        ["node", str(HERE / "provider.mjs")],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=out,
        env={"OIDC_TEST_CONFIG": json.dumps(config), "PATH": "/usr/bin:/bin", "NODE_ENV": "test"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if line.startswith(b"listening "):
            break
    if not line.startswith(b"listening "):
        process.kill()
        raise RuntimeError(f"the OIDC provider did not start; {log}:\n{log.read_text(errors='replace')[-2000:]}")
    return Provider(line.split()[1].decode(), process, log, key, list(web_redirects))


_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"', re.I)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', re.I)


class Browser:
    """A person at a browser: follows the provider's redirects, fills in its login and consent forms, and
    stops at the redirect back to the client (whose query it returns) without loading it."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.http = httpx.Client(follow_redirects=False, timeout=10)

    def close(self) -> None:
        self.http.close()

    def sign_in(self, authorization_url: str, account: str) -> str:
        """The query string the provider redirects back with, after signing in as `account` and consenting."""
        return urllib.parse.urlsplit(self._drive(self.http.get(authorization_url), account)).query

    def sign_in_and_return(self, authorization_url: str, account: str) -> httpx.Response:
        """Sign in, then load the page the provider redirects back to (the CLI's loopback listener)."""
        return self.http.get(self._drive(self.http.get(authorization_url), account))

    def _drive(self, response: httpx.Response, account: str) -> str:
        for _ in range(20):
            if response.is_redirect:
                location = urllib.parse.urljoin(str(response.url), response.headers["location"])
                if not location.startswith(self.issuer):
                    return location  # back at the client: stop here
                response = self.http.get(location)
                continue
            response.raise_for_status()
            html = response.text
            action = _FORM_ACTION.search(html)
            assert action, f"no form on the provider's page: {html[:500]}"
            url = urllib.parse.urljoin(str(response.url), action.group(1).replace("&amp;", "&"))
            form = dict(_HIDDEN.findall(html))
            if 'name="login"' in html:
                form.update(login=account, password="any")
            elif 'name="user_code"' in html and "user_code" not in form:
                raise AssertionError("device page needs a user code: use approve_device")
            response = self.http.post(url, data=form)
        raise AssertionError("the provider's pages did not lead back to the client")

    def approve_device(self, verification_uri_complete: str, account: str) -> None:
        """Enter the device code (pre-filled), sign in and consent, as on a phone."""
        response = self.http.get(verification_uri_complete)
        for _ in range(20):
            if response.is_redirect:
                location = urllib.parse.urljoin(str(response.url), response.headers["location"])
                response = self.http.get(location)
                continue
            response.raise_for_status()
            html = response.text
            action = _FORM_ACTION.search(html)
            if not action:
                return  # the success page
            url = urllib.parse.urljoin(str(response.url), action.group(1).replace("&amp;", "&"))
            form = dict(_HIDDEN.findall(html))
            if 'name="login"' in html:
                form.update(login=account, password="any")
            response = self.http.post(url, data=form)
        raise AssertionError("the device approval did not finish")


def person(base: str) -> tuple[str, str]:
    """A fresh account at the provider modelled on USERS[base]: its login and its e-mail."""
    tag = secrets.token_hex(4)
    email = str(USERS[base]["email"]).replace("@", f"+{tag}@")
    return f"{base}~{tag}", email
