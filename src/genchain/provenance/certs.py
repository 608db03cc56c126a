"""A local certificate authority for C2PA signing (X.509, RFC 5280; C2PA 2.1 §14 "Trust model").

C2PA binds a manifest to an X.509 signing certificate, and validators refuse a self-signed leaf: the signer must
chain to a root that the verifier chooses to trust. Every genchain identity therefore gets its own small PKI,
next to its Ed25519 key in ``$GENCHAIN_HOME/keys/NAME/c2pa/``:

* ``ca.pem`` / ``ca.key``: a root CA (basicConstraints CA:TRUE, pathlen 0, keyCertSign). ``ca.pem`` is what a
  verifier adds as a trust anchor; ``ca.key`` (0600) is needed only to issue a new leaf.
* ``signer.pem`` / ``signer.key``: the leaf that signs C2PA claims: not a CA, keyUsage digitalSignature, extended
  key usage emailProtection (one of the EKUs C2PA validators accept), issued by the root. ``signer.pem`` holds the
  chain leaf first, root second, the order c2pa's signer expects. ``signer.key`` is 0600.
* ``training-mining.json``: the owner's CAWG training-and-mining choices, written into every C2PA manifest.

The keys are Ed25519 like the identity (c2pa-python signs and validates Ed25519 claims), but separate from it: the
identity key signs our own sidecar manifests; the leaf key signs only C2PA claims, and the leaf's subject names the
identity's key id (the UID attribute) so either side can be traced to the other. A leaf that has expired is
re-issued from the root on the next signature.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from genchain.errors import ProvenanceError
from genchain.fileio import atomic_write_bytes, atomic_write_json
from genchain.provenance.keys import Identity, write_private_file

C2PA_DIR = "c2pa"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
LEAF_CERT = "signer.pem"
LEAF_KEY = "signer.key"
TRAINING_MINING = "training-mining.json"
CA_DAYS = 3650
LEAF_DAYS = 730

# CAWG training-and-mining assertion (CAWG 1.1): one entry per kind of use, each allowed / notAllowed / constrained.
TRAINING_MINING_ENTRIES = ("cawg.ai_inference", "cawg.ai_generative_training", "cawg.ai_training",
                           "cawg.data_mining")
TRAINING_MINING_USES = ("allowed", "notAllowed", "constrained")


@dataclass(frozen=True)
class C2paCredentials:
    """The files an identity signs C2PA claims with."""

    directory: Path
    ca_pem: bytes
    chain_pem: bytes  # leaf certificate, then the root
    key_pem: bytes
    leaf: x509.Certificate

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_CERT

    @property
    def leaf_sha256(self) -> str:
        """SHA-256 of the leaf certificate's DER bytes: how a manifest names the C2PA signing certificate."""
        return hashlib.sha256(self.leaf.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def leaf_serial(self) -> str:
        return str(self.leaf.serial_number)


def c2pa_dir(identity: Identity) -> Path:
    if identity.directory is None:
        raise ProvenanceError(f"identity {identity.name!r} has no folder on disk; load it with "
                              "keys.load_identity to sign C2PA manifests")
    return identity.directory / C2PA_DIR


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str, identity: Identity) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "genchain"),
                      x509.NameAttribute(NameOID.USER_ID, identity.key_id)])


def _key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue_root(identity: Identity, key: Ed25519PrivateKey) -> x509.Certificate:
    name = _name(f"genchain root CA for {identity.name}", identity)
    now = _now()
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, None))


def _issue_leaf(identity: Identity, ca: x509.Certificate, ca_key: Ed25519PrivateKey,
                key: Ed25519PrivateKey) -> x509.Certificate:
    now = _now()
    not_after = min(now + datetime.timedelta(days=LEAF_DAYS), ca.not_valid_after_utc)
    return (x509.CertificateBuilder().subject_name(_name(f"genchain signer {identity.name}", identity))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, None))


def create_c2pa_credentials(identity: Identity, *, overwrite: bool = False,
                            training_mining: dict[str, str] | None = None) -> C2paCredentials:
    """Make the root CA and the signing leaf for ``identity`` (private keys 0600).

    Args:
        identity: The identity the certificates name (its key id goes in the subject).
        overwrite: Replace existing credentials. Files signed before keep verifying only against the old root.
        training_mining: CAWG entry -> use; entries not given are ``notAllowed``.
    """
    directory = c2pa_dir(identity)
    if (directory / CA_KEY).exists() and not overwrite:
        raise ProvenanceError(f"{directory} already holds a C2PA root CA; keep it (files signed with it verify "
                              "against it) or pass overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, leaf_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ca = _issue_root(identity, ca_key)
    write_private_file(directory / CA_KEY, _key_pem(ca_key))
    atomic_write_bytes(directory / CA_CERT, _cert_pem(ca))
    _write_leaf(directory, identity, ca, ca_key, leaf_key)
    set_training_mining(identity, training_mining or {})
    return load_c2pa_credentials(identity)


def _write_leaf(directory: Path, identity: Identity, ca: x509.Certificate, ca_key: Ed25519PrivateKey,
                leaf_key: Ed25519PrivateKey) -> None:
    leaf = _issue_leaf(identity, ca, ca_key, leaf_key)
    write_private_file(directory / LEAF_KEY, _key_pem(leaf_key))
    atomic_write_bytes(directory / LEAF_CERT, _cert_pem(leaf) + _cert_pem(ca))


def load_c2pa_credentials(identity: Identity) -> C2paCredentials:
    """The identity's C2PA root and leaf; a clear error when they are missing or unreadable."""
    directory = c2pa_dir(identity)
    for name in (CA_CERT, LEAF_CERT, LEAF_KEY):
        if not (directory / name).is_file():
            raise ProvenanceError(f"identity {identity.name!r} has no C2PA {name} in {directory}; make the "
                                  f"certificates with `genchain keys new --name {identity.name}` (or --c2pa-only)")
    try:
        chain = (directory / LEAF_CERT).read_bytes()
        leaf = x509.load_pem_x509_certificates(chain)[0]
        key_pem = (directory / LEAF_KEY).read_bytes()
        serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as err:
        raise ProvenanceError(f"the C2PA credentials in {directory} are unreadable ({err}); re-create them with "
                              f"`genchain keys new --name {identity.name} --c2pa-only --overwrite`") from None
    return C2paCredentials(directory, (directory / CA_CERT).read_bytes(), chain, key_pem, leaf)


def ensure_c2pa_credentials(identity: Identity) -> C2paCredentials:
    """Load the identity's C2PA credentials, creating them on first use and re-issuing an expired leaf."""
    directory = c2pa_dir(identity)
    if not (directory / CA_KEY).exists():
        return create_c2pa_credentials(identity)
    creds = load_c2pa_credentials(identity)
    if creds.leaf.not_valid_after_utc <= _now() + datetime.timedelta(days=1):
        ca = x509.load_pem_x509_certificate(creds.ca_pem)
        ca_key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
        if not isinstance(ca_key, Ed25519PrivateKey):
            raise ProvenanceError(f"{directory / CA_KEY} is not an Ed25519 key; re-create the C2PA credentials")
        _write_leaf(directory, identity, ca, ca_key, Ed25519PrivateKey.generate())
        creds = load_c2pa_credentials(identity)
    return creds


def set_training_mining(identity: Identity, choices: dict[str, str]) -> dict[str, dict[str, str]]:
    """Record the owner's CAWG training-and-mining choices; unnamed entries are ``notAllowed``.

    Args:
        choices: entry (with or without the ``cawg.`` prefix) -> ``allowed`` | ``notAllowed`` | ``constrained``.
    """
    entries = training_mining_entries(choices)
    atomic_write_json(c2pa_dir(identity) / TRAINING_MINING, entries)
    return entries


def training_mining_entries(choices: dict[str, str]) -> dict[str, dict[str, str]]:
    """The assertion's ``entries`` object, checked: every known entry present, unknown entries refused."""
    entries = {name: {"use": "notAllowed"} for name in TRAINING_MINING_ENTRIES}
    for name, use in choices.items():
        full = name if name.startswith("cawg.") else f"cawg.{name}"
        if full not in entries:
            known = ", ".join(n.removeprefix("cawg.") for n in TRAINING_MINING_ENTRIES)
            raise ProvenanceError(f"unknown training-and-mining entry {name!r}; use one of {known}")
        if use not in TRAINING_MINING_USES:
            raise ProvenanceError(f"training-and-mining use {use!r} for {name}: use one of "
                                  f"{', '.join(TRAINING_MINING_USES)}")
        entries[full] = {"use": use}
    return entries


def training_mining(identity: Identity) -> dict[str, dict[str, str]]:
    """The owner's recorded choices (all ``notAllowed`` when none were recorded)."""
    path = c2pa_dir(identity) / TRAINING_MINING
    if not path.is_file():
        return training_mining_entries({})
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        return training_mining_entries({name: entry["use"] for name, entry in recorded.items()})
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ProvenanceError(f"{path} is unreadable ({err}); rewrite it with `genchain keys new --name "
                              f"{identity.name} --c2pa-only --overwrite --allow ...`") from None
