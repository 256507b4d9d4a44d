"""A self-signed certificate made at start, as a stock CML controller has one.

A CML controller answers HTTPS with a certificate it generated at install; the monitor must
either trust that certificate (`CML_CA_BUNDLE`) or not verify (`CML_VERIFY_TLS=false`). The
simulator makes the same kind of certificate for its loopback address, so tests go over HTTPS.
"""

from __future__ import annotations

import ipaddress
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SelfSignedCertificate:
    """PEM files: the certificate (also the CA bundle that trusts it) and its private key."""

    certfile: Path
    keyfile: Path


def self_signed(host: str = "127.0.0.1", directory: Path | None = None) -> SelfSignedCertificate:
    """A certificate for `host` (an address or a name), signed by its own key, valid for a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = directory or Path(tempfile.mkdtemp(prefix="cml-sim-tls-"))
    certfile, keyfile = folder / "controller.pem", folder / "controller.key"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return SelfSignedCertificate(certfile, keyfile)
