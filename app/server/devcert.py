"""A self-signed certificate for development, so `chatroom` serves https/wss out of the box."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 397  # browsers refuse certificates valid for longer
PRIVATE_FOLDER = 0o700  # the key's folder: nobody else may list it or swap files in it


def ensure_dev_certificate(certfile: Path, keyfile: Path, host: str) -> bool:
    """Create a certificate and key for `host` (and localhost) unless both exist; True if created.

    The key is written with mode 0600, in a folder that is then 0700, whatever the umask and
    whatever was there: a key file left without its certificate is replaced, not rewritten in
    its old mode, and nobody else may swap files in its folder. It never leaves the machine:
    `certs/` ignores it.
    """
    if certfile.exists() and keyfile.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatroom development certificate")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_names_for(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile.parent.mkdir(parents=True, exist_ok=True)
    keyfile.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    keyfile.parent.chmod(PRIVATE_FOLDER)  # mkdir's mode goes through the umask; an old folder keeps its own
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(keyfile, key_bytes)
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return True


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` as a new file of mode 0600: an existing file's mode is not kept, because
    the file is not reused (opening it with O_CREAT would keep its mode)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".new-")  # 0600, whatever the umask
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _names_for(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    extra = {socket.gethostname()} if host in ("0.0.0.0", "::") else {host}
    for name in sorted(extra - {"localhost", "127.0.0.1", "::1", ""}):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names
