"""Ed25519 signing identities: who made an artefact, who signed a ledger's tree head.

An identity is a folder ``$GENCHAIN_HOME/keys/NAME/`` (``GENCHAIN_HOME`` defaults to ``~/.genchain``) holding

* ``ed25519.key``: the private key, PKCS#8 PEM, mode 0600 (created with that mode, never widened);
* ``ed25519.pub``: the public key, SubjectPublicKeyInfo PEM, safe to hand out;
* ``identity.json``: name, key id and creation time.

The key id is the SHA-256 of the raw 32-byte public key, in hex: short enough to print, and what manifests and
signed tree heads name so a verifier can tell which public key it needs. Ed25519 (RFC 8032) because signatures
are deterministic (no nonce to get wrong), small (64 bytes) and fast to check, and ``cryptography`` ships it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from genchain.errors import ProvenanceError
from genchain.fileio import atomic_write_json, atomic_write_text

PRIVATE_KEY = "ed25519.key"
PUBLIC_KEY = "ed25519.pub"
IDENTITY = "identity.json"
DEFAULT_NAME = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def genchain_home() -> Path:
    """Where identities and the default ledger live: ``$GENCHAIN_HOME`` or ``~/.genchain``."""
    return Path(os.environ.get("GENCHAIN_HOME", Path.home() / ".genchain"))


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 hex of the raw public key bytes."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """A public key from PEM or from 64 hex digits of the raw key (as manifests and tree heads carry it)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError as err:
        raise ProvenanceError(f"not an Ed25519 public key (PEM or 64 hex digits): {err}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ProvenanceError(f"the public key is {type(key).__name__}, not Ed25519")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message``."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A named key pair; ``private_key`` is None for an identity known only by its public key."""

    name: str
    public_key: Ed25519PublicKey
    private_key: Ed25519PrivateKey | None = None
    directory: Path | None = None

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @property
    def public_hex(self) -> str:
        return raw_public_bytes(self.public_key).hex()

    def public_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, message: bytes) -> bytes:
        if self.private_key is None:
            raise ProvenanceError(f"identity {self.name!r} has only a public key here; it cannot sign")
        return self.private_key.sign(message)


def write_private_file(path: Path, data: bytes) -> None:
    """Write secret bytes (a private key) atomically with mode 0600 from the first byte: never readable by others."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ProvenanceError(f"identity name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name


def identity_dir(name: str = DEFAULT_NAME, home: Path | None = None) -> Path:
    return (home or genchain_home()) / "keys" / _check_name(name)


def create_identity(name: str = DEFAULT_NAME, home: Path | None = None, overwrite: bool = False) -> Identity:
    """Make a new key pair under ``home/keys/NAME``; refuses to replace an existing one unless ``overwrite``."""
    directory = identity_dir(name, home)
    if (directory / PRIVATE_KEY).exists() and not overwrite:
        raise ProvenanceError(f"identity {name!r} already exists in {directory}; pick another --name "
                              "(replacing a key orphans every signature made with it)")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    write_private_file(directory / PRIVATE_KEY, pem)
    identity = Identity(name, private_key.public_key(), private_key, directory)
    atomic_write_text(directory / PUBLIC_KEY, identity.public_pem())
    atomic_write_json(directory / IDENTITY, {"schema": 1, "name": name, "key_id": identity.key_id,
                                             "public_key": identity.public_hex, "algorithm": "Ed25519",
                                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return identity


def load_identity(name: str = DEFAULT_NAME, home: Path | None = None) -> Identity:
    """The identity ``name`` with its private key; a clear error when it is missing or unreadable."""
    directory = identity_dir(name, home)
    path = directory / PRIVATE_KEY
    if not path.exists():
        raise ProvenanceError(f"no signing identity {name!r} in {directory.parent}; make one with "
                              f"`genchain keys new --name {name}`")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ProvenanceError(f"{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")
    try:
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise ProvenanceError(f"{path} is not a readable private key: {err}") from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ProvenanceError(f"{path} holds a {type(private_key).__name__}, not an Ed25519 key")
    return Identity(name, private_key.public_key(), private_key, directory)


def ensure_identity(name: str = DEFAULT_NAME, home: Path | None = None) -> tuple[Identity, bool]:
    """Load ``name``, creating it on first use (signing is on by default); True in the pair when it is new."""
    if (identity_dir(name, home) / PRIVATE_KEY).exists():
        return load_identity(name, home), False
    return create_identity(name, home), True


def list_identities(home: Path | None = None) -> list[dict]:
    """The identity.json of every identity under ``home``."""
    root = (home or genchain_home()) / "keys"
    found = []
    for path in sorted(root.glob(f"*/{IDENTITY}")):
        found.append(json.loads(path.read_text()))
    return found


def derive_secret(identity: Identity, purpose: str) -> bytes:
    """A 32-byte secret for ``purpose`` (e.g. a watermark key), derived from the identity's private key.

    HMAC-SHA256 keyed by the raw private key: one key to guard, one secret per purpose, and knowing one secret
    reveals neither the key nor the other secrets. Only the key holder can derive it, so only they can detect
    their own watermarks.
    """
    import hmac

    if identity.private_key is None:
        raise ProvenanceError(f"identity {identity.name!r} has only a public key here; it cannot derive secrets")
    raw = identity.private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                             serialization.NoEncryption())
    return hmac.new(raw, f"genchain/{purpose}".encode(), hashlib.sha256).digest()
