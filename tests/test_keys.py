"""Signing identities: created 0600, loaded back, signatures check, secrets differ by purpose and by key."""

import os
import stat

import pytest

from genchain.errors import ProvenanceError
from genchain.provenance import keys


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "gc"))
    return tmp_path / "gc"


def test_create_load_sign_verify(home):
    made = keys.create_identity("alice")
    private = made.directory / keys.PRIVATE_KEY
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.directory.stat().st_mode) == 0o700
    loaded = keys.load_identity("alice")
    assert loaded.key_id == made.key_id and len(loaded.key_id) == 64
    signature = loaded.sign(b"artefact bytes")
    assert keys.verify_signature(made.public_key, signature, b"artefact bytes")
    assert not keys.verify_signature(made.public_key, signature, b"artefact bytez")
    from_hex = keys.public_key_from_text(made.public_hex)
    from_pem = keys.public_key_from_text((made.directory / keys.PUBLIC_KEY).read_text())
    assert keys.key_id(from_hex) == keys.key_id(from_pem) == made.key_id
    assert [i["name"] for i in keys.list_identities()] == ["alice"]


def test_refuses_to_replace_and_reports_missing(home):
    keys.create_identity("bob")
    with pytest.raises(ProvenanceError, match="already exists"):
        keys.create_identity("bob")
    with pytest.raises(ProvenanceError, match="genchain keys new --name carol"):
        keys.load_identity("carol")
    with pytest.raises(ProvenanceError, match="identity name"):
        keys.create_identity("../escape")


def test_world_readable_key_is_refused(home):
    made = keys.create_identity("dave")
    os.chmod(made.directory / keys.PRIVATE_KEY, 0o644)
    with pytest.raises(ProvenanceError, match="chmod 600"):
        keys.load_identity("dave")


def test_ensure_identity_creates_once(home):
    first, created = keys.ensure_identity()
    again, created_again = keys.ensure_identity()
    assert created and not created_again and first.key_id == again.key_id


def test_derived_secrets_are_per_purpose_and_per_key(home):
    a = keys.create_identity("a")
    b = keys.create_identity("b")
    text_a = keys.derive_secret(a, "watermark/text/v1")
    assert text_a == keys.derive_secret(keys.load_identity("a"), "watermark/text/v1") and len(text_a) == 32
    assert text_a != keys.derive_secret(a, "watermark/image/v1")
    assert text_a != keys.derive_secret(b, "watermark/text/v1")
    public_only = keys.Identity("a", a.public_key)
    with pytest.raises(ProvenanceError, match="only a public key"):
        keys.derive_secret(public_only, "x")


def test_not_a_key(home):
    with pytest.raises(ProvenanceError, match="not an Ed25519 public key"):
        keys.public_key_from_text("zz")
