"""TLS for gRPC: the server's credentials (optionally requiring client certificates: mTLS between services),
and the credentials of outbound channels (peers, the CLI).

Files are read when the process starts, and a missing or unreadable one stops it with one line naming its
setting. A service's certificate must name every address its callers dial (a DNS name in a cluster, and
127.0.0.1 for the calls a process makes to its own services).
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from pynode.core.settings import SettingsError, env_name


def _read(path: str, field: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise SettingsError(f"{env_name(field)}: cannot read {path} ({exc.strerror})") from None


def server_credentials(cert_file: str, key_file: str, client_ca_file: str = "") -> grpc.ServerCredentials | None:
    """TLS for the listener when a certificate is configured (None: plaintext); with a client CA, callers must
    present a certificate it signed."""
    if not cert_file and not key_file:
        if client_ca_file:
            raise SettingsError("DEVPYNODE_TLS_CLIENT_CA_FILE: needs DEVPYNODE_TLS_CERT_FILE and _KEY_FILE")
        return None
    if not (cert_file and key_file):
        raise SettingsError("DEVPYNODE_TLS_CERT_FILE and DEVPYNODE_TLS_KEY_FILE go together: give both")
    pair = (_read(key_file, "tls_key_file"), _read(cert_file, "tls_cert_file"))
    client_ca = _read(client_ca_file, "tls_client_ca_file") if client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def channel_credentials(ca_file: str, cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials | None:
    """TLS for outbound channels when a CA is configured (None: plaintext); the process's own certificate, when
    it has one, is its client identity (mTLS)."""
    if not ca_file:
        return None
    ca = _read(ca_file, "tls_ca_file")
    if cert_file and key_file:
        return grpc.ssl_channel_credentials(ca, _read(key_file, "tls_key_file"), _read(cert_file, "tls_cert_file"))
    return grpc.ssl_channel_credentials(ca)


def environment_channel_credentials() -> grpc.ChannelCredentials | None:
    """Outbound credentials from the environment alone (the CLI, which loads no settings tree)."""
    return channel_credentials(
        os.environ.get("DEVPYNODE_TLS_CA_FILE", ""),
        os.environ.get("DEVPYNODE_TLS_CLIENT_CERT_FILE", ""),
        os.environ.get("DEVPYNODE_TLS_CLIENT_KEY_FILE", ""),
    )
