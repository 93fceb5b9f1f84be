"""One OpenID provider as the relying party sees it: discovery, keys, code exchange, userinfo, device flow.

Every call goes out with a deadline cut to the caller's remaining time; answers are read up to a size limit;
discovery and the JWKS are cached and refetched (the JWKS at once, at most every few seconds) when a token names
a key id not seen yet. The provider's tokens are used here and never returned to a client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from pynode.auth.oidc.config import OidcProviderConfig
from pynode.core.deadlines import outbound_timeout
from pynode.core.errors import Unauthenticated, Unavailable

log = logging.getLogger("pynode.auth.oidc")

HTTP_BUDGET_SECONDS = 10.0
MAX_RESPONSE_BYTES = 512 * 1024
METADATA_TTL_SECONDS = 3600.0
KEY_REFETCH_SPACING_SECONDS = 5.0  # an unknown kid refetches the JWKS once, never in a loop
RETRY_DISCOVERY_SECONDS = 10.0  # after a failed discovery, sign-ins answer UNAVAILABLE without calling out again
LEEWAY_SECONDS = 60  # clock skew allowed on exp/iat/nbf (ASVS asks for little)


class ProviderRefused(Unauthenticated):
    """The provider's answer or token failed a check; the message says which check, never a token."""

    def __init__(self, message: str, reason: str = "OIDC_TOKEN_INVALID") -> None:
        super().__init__(message, reason=reason)


@dataclass(frozen=True)
class Metadata:
    """What discovery told us, already checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    device_authorization_endpoint: str
    iss_parameter: bool  # RFC 9207: the redirect carries `iss`
    algorithms: tuple[str, ...]  # ID token algorithms both sides accept


@dataclass(frozen=True)
class TokenAnswer:
    """The token endpoint's answer: the checked ID token claims and the access token for userinfo."""

    claims: dict[str, Any]
    access_token: str


@dataclass(frozen=True)
class DeviceGrant:
    """A device authorization (RFC 8628 section 3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: float
    interval: float


class DevicePending(Exception):
    """The person has not approved the device sign-in yet; `slow_down` asks for a longer interval."""

    def __init__(self, slow_down: bool) -> None:
        super().__init__("authorization pending")
        self.slow_down = slow_down


class OidcProvider:
    """The relying party's side of one configured provider."""

    def __init__(self, config: OidcProviderConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http
        self._metadata: Metadata | None = None
        self._metadata_at = 0.0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at = -KEY_REFETCH_SPACING_SECONDS
        self._failed_at = -RETRY_DISCOVERY_SECONDS
        self._lock = asyncio.Lock()
        self.key_fetches = 0  # how many times the JWKS was fetched (an unknown kid refetches once)

    @property
    def known(self) -> Metadata | None:
        """The discovery document if it was fetched already (listing providers never calls out)."""
        return self._metadata

    # --- discovery and keys -------------------------------------------------------------------------------

    async def metadata(self) -> Metadata:
        """The checked discovery document (cached for an hour; a failure is not retried for 10 s)."""
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL_SECONDS:
            async with self._lock:
                if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL_SECONDS:
                    await self._refresh_metadata()
        assert self._metadata is not None
        return self._metadata

    async def _refresh_metadata(self) -> None:
        if self._metadata is None and time.monotonic() - self._failed_at < RETRY_DISCOVERY_SECONDS:
            raise self._down()
        try:
            self._metadata = await self._discover()
        except Unavailable:
            self._failed_at = time.monotonic()
            if self._metadata is None:
                raise
            log.warning("oidc provider %s: discovery failed; keeping the previous document", self.config.id)
        self._metadata_at = time.monotonic()

    async def _discover(self) -> Metadata:
        issuer = self.config.issuer
        doc = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if doc.get("issuer") != issuer:  # exact: no trailing-slash or case leniency (mix-up attacks)
            raise self._unavailable(f"discovery names issuer {str(doc.get('issuer'))[:200]!r}, configured {issuer!r}")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(name), str):
                raise self._unavailable(f"discovery lacks {name}")
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise self._unavailable("the provider does not support PKCE S256")
        offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in self.config.id_token_algorithms if a in offered)
        if not algorithms:
            raise self._unavailable(f"no ID token algorithm in common (provider offers {offered})")
        return Metadata(
            issuer=issuer,
            authorization_endpoint=doc["authorization_endpoint"],
            token_endpoint=doc["token_endpoint"],
            jwks_uri=doc["jwks_uri"],
            userinfo_endpoint=str(doc.get("userinfo_endpoint") or ""),
            device_authorization_endpoint=str(doc.get("device_authorization_endpoint") or ""),
            iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
            algorithms=algorithms,
        )

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        if kid is None or kid not in self._keys:
            async with self._lock:
                if (kid is None or kid not in self._keys) and (
                    not self._keys or time.monotonic() - self._keys_at >= KEY_REFETCH_SPACING_SECONDS
                ):
                    await self._fetch_keys()
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise ProviderRefused("the ID token names no key (kid) and the provider has several")
        key = self._keys.get(kid)
        if key is None:
            raise ProviderRefused("the ID token is signed with a key the provider does not publish")
        return key

    async def _fetch_keys(self) -> None:
        doc = await self._get_json((await self.metadata()).jwks_uri)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in doc.get("keys", []) if isinstance(doc.get("keys"), list) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # an algorithm this side cannot use: never the one that signs
        self._keys = keys
        self._keys_at = time.monotonic()
        self.key_fetches += 1

    # --- the flows -------------------------------------------------------------------------------------------

    async def exchange_code(self, code: str, redirect_uri: str, verifier: str, client_id: str) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code (with the PKCE verifier)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        return await self._token(form, client_id)

    async def device_authorize(self, client_id: str) -> DeviceGrant:
        """Start a device authorization (RFC 8628)."""
        endpoint = (await self.metadata()).device_authorization_endpoint
        if not endpoint:
            raise Unavailable(f"provider {self.config.id} has no device flow", retry_after=60)
        body = await self._post(endpoint, {"client_id": client_id, "scope": " ".join(self.config.scopes)}, "")
        try:
            return DeviceGrant(
                device_code=str(body["device_code"]),
                user_code=str(body["user_code"]),
                verification_uri=str(body["verification_uri"]),
                verification_uri_complete=str(body.get("verification_uri_complete", "")),
                expires_in=float(body.get("expires_in", 600)),
                interval=float(body.get("interval", 5)),
            )
        except (KeyError, TypeError, ValueError):
            raise self._unavailable("the device authorization answer is malformed") from None

    async def poll_device(self, device_code: str, client_id: str) -> dict[str, Any]:
        """One device token request; DevicePending while the person has not approved yet."""
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": device_code}
        return await self._token(form, client_id, device=True)

    async def _token(self, form: dict[str, str], client_id: str, *, device: bool = False) -> dict[str, Any]:
        secret = self.config.client_secret.get_secret_value() if client_id == self.config.client_id else ""
        body = await self._post((await self.metadata()).token_endpoint, form, client_id, secret, device=device)
        if body.get("token_type", "").lower() != "bearer" or not isinstance(body.get("id_token"), str):
            raise ProviderRefused("the token endpoint answered no bearer token and ID token")
        return body

    async def check_id_token(self, token: str, client_id: str, nonce: str | None) -> dict[str, Any]:
        """The ID token's claims once signature, algorithm, issuer, audience, azp, times and nonce hold."""
        meta = await self.metadata()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise ProviderRefused("the ID token is not a JWS") from None
        alg = header.get("alg")
        if alg not in meta.algorithms:
            raise ProviderRefused(f"the ID token algorithm {str(alg)[:20]!r} is not accepted")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=client_id,
                issuer=meta.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"], "strict_aud": False},
            )
        except jwt.InvalidAudienceError:
            raise ProviderRefused("the ID token was issued to another client (aud)") from None
        except jwt.InvalidIssuerError:
            raise ProviderRefused("the ID token names another issuer") from None
        except jwt.ExpiredSignatureError:
            raise ProviderRefused("the ID token has expired") from None
        except jwt.PyJWTError as exc:
            raise ProviderRefused(f"the ID token is invalid ({type(exc).__name__})") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != client_id:
            raise ProviderRefused("the ID token's authorized party (azp) is another client")
        if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise ProviderRefused("the ID token's nonce does not match this sign-in")
        if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
            raise ProviderRefused("the ID token's subject is malformed")
        return claims

    async def userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The userinfo claims (e-mail, groups), whose `sub` must be the ID token's."""
        endpoint = (await self.metadata()).userinfo_endpoint
        if not endpoint:
            return {}
        info = await self._get_json(endpoint, access_token)
        if info.get("sub") != subject:
            raise ProviderRefused("userinfo describes another subject than the ID token")
        return info

    # --- HTTP --------------------------------------------------------------------------------------------------

    async def _get_json(self, url: str, bearer: str = "") -> dict[str, Any]:
        headers = {"accept": "application/json"}
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        return await self._send("GET", url, headers=headers)

    async def _post(
        self, url: str, form: dict[str, str], client_id: str, secret: str = "", *, device: bool = False
    ) -> dict[str, Any]:
        auth = None
        form = dict(form)
        if secret:  # client_secret_basic, the default every provider supports
            auth = httpx.BasicAuth(client_id, secret)
        elif client_id:
            form["client_id"] = client_id
        return await self._send("POST", url, data=form, auth=auth, device=device)

    async def _send(self, method: str, url: str, *, device: bool = False, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self._http.stream(method, url, timeout=outbound_timeout(HTTP_BUDGET_SECONDS), **kwargs) as r:
                raw = bytearray()
                async for chunk in r.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise self._unavailable(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
                status = r.status_code
        except httpx.HTTPError as exc:
            raise self._unavailable(f"{url} is unreachable ({type(exc).__name__})") from None
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._unavailable(f"{url} answered {status} without a JSON object")
        if status >= 400:
            error = str(body.get("error", ""))[:64]
            if device and error in ("authorization_pending", "slow_down"):
                raise DevicePending(error == "slow_down")
            if status >= 500:
                raise self._unavailable(f"{url} answered {status}")
            # The provider's own code (invalid_grant for a used or foreign code), never its description.
            raise ProviderRefused(f"the provider refused: {error or status}", reason="OIDC_PROVIDER_ERROR")
        return body

    def _unavailable(self, why: str) -> Unavailable:
        log.warning("oidc provider %s: %s", self.config.id, why)
        return self._down()

    def _down(self) -> Unavailable:
        return Unavailable(f"sign-in provider {self.config.id} is unavailable; retry later", retry_after=5)
