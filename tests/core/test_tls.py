"""TLS on the gRPC port, mTLS between services, and the CLI over TLS, with certificates the test makes."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc

from pynode.app.bootstrap import build
from pynode.core.settings import SettingsError
from tests.backends import Backend
from tests.client import MeshClient, run_cli
from tests.conftest import make_settings


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(path: Path, key: Any, certificate: x509.Certificate) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def make_pki(directory: Path) -> dict[str, str]:
    """A CA, a service certificate for localhost and 127.0.0.1, and a client certificate, all signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("devpynode test CA"))
        .issuer_name(_name("devpynode test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_cert, _ = _pem(directory / "ca", ca_key, ca)

    def signed(common: str, names: list[x509.GeneralName]) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return _pem(directory / common, key, certificate)

    server_cert, server_key = signed(
        "service", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    client_cert, client_key = signed("client", [x509.DNSName("client")])
    return {
        "ca": ca_cert,
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


async def test_mtls_between_clients_and_services(strict: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    plain: MeshClient = await strict(
        tls_cert_file=pki["server_cert"],
        tls_key_file=pki["server_key"],
        tls_client_ca_file=pki["ca"],
        tls_ca_file=pki["ca"],  # its own peer calls (chat -> AI router) go over mTLS too
    )
    port = strict.servers[-1].port
    read = Path.read_bytes
    credentials = grpc.ssl_channel_credentials(
        read(Path(pki["ca"])), read(Path(pki["client_key"])), read(Path(pki["client_cert"]))
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        user = MeshClient(channel)
        await user.register()
        # CreateConversation asks the AI router (a peer call over the same mTLS) whether the model exists.
        created = await chat_pb2_grpc.ChatServiceStub(channel).CreateConversation(
            chat_pb2.CreateConversationRequest(model="builtin/echo"), metadata=user.md()
        )
        assert created.conversation.model == "builtin/echo"
    # Without a client certificate, or without TLS, nothing gets through.
    no_identity = grpc.ssl_channel_credentials(read(Path(pki["ca"])))
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", no_identity) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await MeshClient(channel).register()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as plaintext:
        await plain.register()
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE

    env = {
        "DEVPYNODE_SERVER": f"127.0.0.1:{port}",
        "DEVPYNODE_TLS_CA_FILE": pki["ca"],
        "DEVPYNODE_TLS_CLIENT_CERT_FILE": pki["client_cert"],
        "DEVPYNODE_TLS_CLIENT_KEY_FILE": pki["client_key"],
    }
    code, _, err = await run_cli("health", env=env)
    assert code == 0, err
    code, _, err = await run_cli("health", env={**env, "DEVPYNODE_TLS_CA_FILE": ""})
    assert code != 0 and "Traceback" not in err


async def test_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    embedded = Backend("embedded", "", "memory://", "t:")
    from pynode.app.server import MeshServer

    server = MeshServer(await build(make_settings(embedded, tmp_path / "a", tls_cert_file="x.crt")))
    try:
        with pytest.raises(SettingsError, match="DEVPYNODE_TLS_CERT_FILE and DEVPYNODE_TLS_KEY_FILE go together"):
            await server.start()
    finally:
        await server.stop(0)
    with pytest.raises(SettingsError, match="DEVPYNODE_TLS_CA_FILE: cannot read"):
        await build(make_settings(embedded, tmp_path / "b", tls_ca_file=str(tmp_path / "missing.pem")))
