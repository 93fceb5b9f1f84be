"""Single sign-on in Chromium (web/e2e/sso.spec.ts): the sign-in page's provider button, the provider's real
login and consent pages, /oidc/callback finishing over grpc-web, and the account page's linked identity.

The embedded backends over plain HTTP (the SSO checks are the auth service's, tested on both sets in
tests/sso); a provider of its own, whose web client has this run's callback URL registered.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from tests import oidcprovider
from tests.backends import Backend
from tests.conftest import one_backend
from tests.web.test_browser import CHROMIUM, ROOT, WEB, serve_platform, skip_without_browser

pytestmark = one_backend


async def test_sign_in_with_the_provider_in_a_browser(backend: Backend, tmp_path: Path) -> None:
    skip_without_browser()
    missing = oidcprovider.node_available()
    assert not missing, missing
    http_port = oidcprovider.free_port()
    callback = f"http://127.0.0.1:{http_port}/oidc/callback"
    provider = oidcprovider.start(tmp_path, web_redirects=(callback,))
    try:
        entry = provider.settings("corp")
        extra = {
            "DEVPYNODE_AUTH_OIDC_PROVIDERS": json.dumps([entry]),
            "DEVPYNODE_AUTH_OIDC_WEB_REDIRECT_URL": callback,
        }
        async with serve_platform(backend, tmp_path, extra, http_port) as url:
            account, email = oidcprovider.person("alice")
            linker, _ = oidcprovider.person("alice")
            out = ROOT / "web" / "e2e" / "out" / "sso"
            shutil.rmtree(out, ignore_errors=True)
            env = {
                **os.environ,
                "DEVPYNODE_WEB_URL": url,
                "DEVPYNODE_E2E_OUT": str(out),
                "DEVPYNODE_E2E_OIDC_ACCOUNT": account,
                "DEVPYNODE_E2E_OIDC_EMAIL": email,
                "DEVPYNODE_E2E_OIDC_LINK_ACCOUNT": linker,
                "CHROMIUM_PATH": CHROMIUM,
            }
            run = await asyncio.create_subprocess_exec(
                str(WEB / "node_modules" / ".bin" / "playwright"), "test", "e2e/sso.spec.ts",
                cwd=WEB, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(run.communicate(), 300)
            text = output.decode(errors="replace")
            assert run.returncode == 0, f"Playwright failed (screens and traces in {out}):\n{text[-12000:]}"
            assert "2 passed" in text, text[-2000:]
    finally:
        provider.stop()
