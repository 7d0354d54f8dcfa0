"""Keys, self-signed certificates, fingerprint pinning and the TLS 1.3 contexts.

State-dir layout (created by :func:`init_identity`):

    key.pem          EC P-256 private key, mode 0600, created with O_EXCL
    cert.pem         self-signed X.509 certificate (EKU serverAuth + clientAuth)
    trusted-peers    one pinned SHA-256 fingerprint per line (``# comment`` allowed)
    peers/FP.pem     a pinned peer's certificate, needed on an *agent* so that
                     OpenSSL can request and verify the client's certificate

Authentication is mutual and by pin only, never by a CA:
  * the agent's server context requires a client certificate and only trusts
    certificates in ``peers/`` whose fingerprint is pinned; after the
    handshake the peer's fingerprint is checked against the pins again before
    a single application byte is read (:func:`peer_fingerprint`).
  * the migration source pins the agent's fingerprint; OpenSSL's chain check
    is off on that side because the pin is stronger than a CA, and the pin is
    checked right after the handshake before anything is sent.
Only TLS 1.3 is accepted. Python's ``ssl`` module has no verify callback, so
the agent needs the peer's certificate file, not only its fingerprint: an
agent refuses to start trusting a pinned fingerprint whose certificate is
missing (it is logged and that peer cannot connect).

This module refuses: overwriting an existing identity, fingerprints that are
not 64 hex digits, a peer certificate whose fingerprint differs from the pin.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from capture.errors import BadInputError, HetmigError, MigrationError

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
TRUSTED_FILE = "trusted-peers"
PEERS_DIR = "peers"

_FP_RE = re.compile(r"^[0-9a-f]{64}$")


class AuthError(MigrationError):
    """A peer failed authentication (unpinned or wrong certificate)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """This host's key pair on disk and its certificate fingerprint."""

    state_dir: Path
    key_path: Path
    cert_path: Path
    fingerprint: str


def normalize_fingerprint(text: str, *, field: str = "fingerprint") -> str:
    """Accept ``AB:CD...``, ``sha256:abcd...`` or plain hex; return 64 lowercase hex."""
    raw = text.strip().lower()
    if raw.startswith("sha256:"):
        raw = raw[len("sha256:"):]
    raw = raw.replace(":", "")
    if not _FP_RE.match(raw):
        raise BadInputError(f"{field}={text!r} is not a SHA-256 fingerprint (expected 64 hex digits)")
    return raw


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def fingerprint_pem_file(path: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(path.read_text())
    return fingerprint_der(der)


def _write_excl(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def init_identity(state_dir: Path, *, common_name: str | None = None) -> Identity:
    """Create a key pair and a self-signed certificate in *state_dir*.

    The subject is unique per identity (``hetmig-<random>``): OpenSSL finds a
    trusted certificate by subject name, so two pinned peers sharing a subject
    would make one of them fail verification.
    """
    import secrets

    if common_name is None:
        common_name = f"hetmig-{secrets.token_hex(8)}"
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
    for p in (key_path, cert_path):
        if p.exists():
            raise BadInputError(f"{p}: an identity already exists (refusing to overwrite)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_excl(key_path, key_pem, 0o600)
    _write_excl(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return load_identity(state_dir)


def load_identity(state_dir: Path) -> Identity:
    key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
    if not key_path.is_file() or not cert_path.is_file():
        raise BadInputError(
            f"{state_dir}: no identity (missing {KEY_FILE} or {CERT_FILE}); run `hetmig agent init --state-dir {state_dir}`"
        )
    return Identity(state_dir, key_path, cert_path, fingerprint_pem_file(cert_path))


def read_trusted(state_dir: Path) -> set[str]:
    """Pinned fingerprints; a malformed line is an error naming the line."""
    path = state_dir / TRUSTED_FILE
    if not path.exists():
        return set()
    pins: set[str] = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text:
            pins.add(normalize_fingerprint(text, field=f"{path}:{lineno}"))
    return pins


def trust(state_dir: Path, fingerprint: str, *, cert: Path | None = None, comment: str = "") -> str:
    """Pin *fingerprint* (and store *cert* under peers/ after checking it matches)."""
    fp = normalize_fingerprint(fingerprint)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cert is not None:
        actual = fingerprint_pem_file(cert)
        if actual != fp:
            raise BadInputError(f"--cert {cert}: fingerprint {actual} does not match the pinned {fp}")
        peers = state_dir / PEERS_DIR
        peers.mkdir(exist_ok=True, mode=0o700)
        tmp = peers / f".{fp}.pem.tmp"
        tmp.write_text(cert.read_text())
        os.replace(tmp, peers / f"{fp}.pem")
    if fp not in read_trusted(state_dir):
        path = state_dir / TRUSTED_FILE
        line = fp + (f"  # {comment}" if comment else "") + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    return fp


def pinned_peer_certs(state_dir: Path) -> tuple[dict[str, str], list[str]]:
    """(fingerprint -> PEM text) for pins that have a stored cert, and pins without one."""
    certs: dict[str, str] = {}
    missing: list[str] = []
    for fp in sorted(read_trusted(state_dir)):
        path = state_dir / PEERS_DIR / f"{fp}.pem"
        if path.is_file() and fingerprint_pem_file(path) == fp:
            certs[fp] = path.read_text()
        else:
            missing.append(fp)
    return certs, missing


def server_context(ident: Identity, peer_pems: dict[str, str]) -> ssl.SSLContext:
    """TLS 1.3 server context that requires a client cert among *peer_pems*."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if peer_pems:  # with no pinned certs the store is empty and every handshake fails
        ctx.load_verify_locations(cadata="".join(peer_pems.values()))
    return ctx


def client_context(ident: Identity) -> ssl.SSLContext:
    """TLS 1.3 client context presenting our cert; the server is checked by pin afterwards."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    return ctx


def peer_fingerprint(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    if not der:
        raise AuthError("peer presented no certificate")
    return fingerprint_der(der)


def check_pinned(sock: ssl.SSLSocket, pins: set[str], *, role: str) -> str:
    """Fingerprint of the peer, or AuthError if it is not pinned (nothing is read)."""
    fp = peer_fingerprint(sock)
    if fp not in pins:
        raise AuthError(f"{role} certificate fingerprint {fp} is not pinned")
    return fp


__all__ = [
    "AuthError", "Identity", "HetmigError", "init_identity", "load_identity", "trust",
    "read_trusted", "pinned_peer_certs", "server_context", "client_context",
    "peer_fingerprint", "check_pinned", "normalize_fingerprint", "fingerprint_der",
]
