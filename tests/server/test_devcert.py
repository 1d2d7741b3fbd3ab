"""The development certificate: its key readable by its owner only, whatever was there before."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.server.devcert import ensure_dev_certificate


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000, as some systems and containers run with: nothing masked from new files."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_pair(cert: Path, key: Path) -> None:
    """The key is the private half of the certificate's public key."""
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    assert private.public_key() == public


@pytest.mark.usefixtures("permissive_umask")
def test_a_new_key_is_0600_in_a_folder_made_0700(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    cert, key = folder / "cert.pem", folder / "key.pem"
    assert ensure_dev_certificate(cert, key, "127.0.0.1")
    assert mode(key) == 0o600
    assert mode(folder) == 0o700
    assert_pair(cert, key)


@pytest.mark.usefixtures("permissive_umask")
def test_a_key_written_over_an_existing_0644_file_is_0600(tmp_path: Path) -> None:
    """A key left without its certificate (or a file put there by someone else) is replaced,
    and the new key does not inherit the old file's mode; nor does the folder keep its own."""
    folder = tmp_path / "certs"
    folder.mkdir(mode=0o777)  # as a checkout under umask 000 leaves certs/
    cert, key = folder / "cert.pem", folder / "key.pem"
    key.write_text("an old key\n")
    key.chmod(0o644)
    assert ensure_dev_certificate(cert, key, "127.0.0.1")
    assert mode(key) == 0o600
    assert mode(folder) == 0o700
    assert_pair(cert, key)
    assert sorted(path.name for path in folder.iterdir()) == ["cert.pem", "key.pem"]  # no temporary left


def test_an_existing_pair_is_kept_as_it_is(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert ensure_dev_certificate(cert, key, "127.0.0.1")
    before = (cert.read_bytes(), key.read_bytes())
    assert not ensure_dev_certificate(cert, key, "127.0.0.1")
    assert (cert.read_bytes(), key.read_bytes()) == before
