"""C2PA: the local CA and leaf, embedding in real PNG/JPEG/GIF/WAV/MP4 files, Trusted only with the anchor."""

import datetime
import stat

import numpy as np
import pytest
import soundfile
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from genchain.cli import main
from genchain.errors import ProvenanceError
from genchain.provenance import certs, keys
from genchain.provenance.c2pa_embed import TRAINED_ALGORITHMIC_MEDIA, describe, embed_c2pa, media_type, read_c2pa

POINTER = {"manifest": "x.manifest.json", "signer_key_id": "00" * 32, "generation_sha256": "11" * 32}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "gc"))
    return tmp_path / "gc"


@pytest.fixture()
def credentials():
    return certs.create_c2pa_credentials(keys.create_identity("alice"))


def make_file(directory, suffix):
    rng = np.random.default_rng(0)
    path = directory / f"sample{suffix}"
    if suffix == ".wav":
        soundfile.write(path, rng.standard_normal(4000) * 0.1, 8000)
    elif suffix == ".mp4":
        import cv2

        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (32, 32))
        for _ in range(4):
            writer.write(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        writer.release()
    else:
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def test_root_and_leaf_certificates_are_what_c2pa_requires(credentials):
    root = x509.load_pem_x509_certificate(credentials.ca_pem)
    leaf = credentials.leaf
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert leaf.issuer == root.subject and leaf.subject != root.subject
    leaf.verify_directly_issued_by(root)
    identity = keys.load_identity("alice")
    assert identity.key_id in leaf.subject.rfc4514_string()
    for name in (certs.CA_KEY, certs.LEAF_KEY):
        assert stat.S_IMODE((credentials.directory / name).stat().st_mode) == 0o600
    with pytest.raises(ProvenanceError, match="already holds a C2PA root CA"):
        certs.create_c2pa_credentials(identity)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".wav", ".mp4"])
def test_embedded_manifest_is_trusted_with_the_anchor_and_only_valid_without(tmp_path, credentials, suffix):
    path = make_file(tmp_path, suffix)
    info = embed_c2pa(path, credentials, POINTER, certs.training_mining_entries({}))
    assert info["embedded"] and info["format"] == media_type(path)
    trusted = read_c2pa(path, credentials.ca_pem, "alice's CA")
    assert trusted.state == "Trusted" and trusted.failures == [], trusted
    assert trusted.pointer == POINTER and trusted.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert trusted.training_mining == {name: {"use": "notAllowed"} for name in certs.TRAINING_MINING_ENTRIES}
    assert trusted.signer["cert_serial_number"] == info["certificate_serial"]
    assert "Trusted by alice's CA" in describe(trusted)
    untrusted = read_c2pa(path)
    assert untrusted.state == "Valid" and untrusted.failures == ["signingCredential.untrusted"]
    assert "not Trusted" in describe(untrusted)


def test_another_root_does_not_make_it_trusted(tmp_path, credentials):
    other = certs.create_c2pa_credentials(keys.create_identity("bob"))
    path = make_file(tmp_path, ".png")
    embed_c2pa(path, credentials, POINTER, certs.training_mining_entries({}))
    report = read_c2pa(path, other.ca_pem, "bob's CA")
    assert report.state == "Valid" and "signingCredential.untrusted" in report.failures


def test_changed_pixels_make_it_invalid_with_the_c2pa_code(tmp_path, credentials):
    path = make_file(tmp_path, ".png")
    embed_c2pa(path, credentials, POINTER, certs.training_mining_entries({}))
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the image data, after the manifest store
    path.write_bytes(bytes(data))
    report = read_c2pa(path, credentials.ca_pem, "alice's CA")
    assert report.state == "Invalid" and "assertion.dataHash.mismatch" in report.failures
    assert "assertion.dataHash.mismatch" in describe(report)


def test_no_manifest_and_formats_without_c2pa(tmp_path):
    plain = make_file(tmp_path, ".png")
    assert not read_c2pa(plain).present
    text = tmp_path / "a.txt"
    text.write_text("hello")
    assert not read_c2pa(text).present and media_type(text) == "text/plain"
    with pytest.raises(ProvenanceError, match="cannot be embedded in .txt"):
        embed_c2pa(text, None, POINTER, {})


def test_owner_choices_for_training_and_mining(tmp_path, credentials):
    identity = keys.load_identity("alice")
    certs.set_training_mining(identity, {"ai_inference": "allowed", "cawg.data_mining": "constrained"})
    entries = certs.training_mining(identity)
    assert entries["cawg.ai_inference"] == {"use": "allowed"}
    assert entries["cawg.data_mining"] == {"use": "constrained"}
    assert entries["cawg.ai_training"] == {"use": "notAllowed"}
    path = make_file(tmp_path, ".jpg")
    embed_c2pa(path, credentials, POINTER, entries)
    assert read_c2pa(path).training_mining == entries
    with pytest.raises(ProvenanceError, match="unknown training-and-mining entry 'scraping'"):
        certs.training_mining_entries({"scraping": "allowed"})
    with pytest.raises(ProvenanceError, match="use 'maybe'"):
        certs.training_mining_entries({"ai_training": "maybe"})


def test_expired_leaf_is_reissued_from_the_root(credentials):
    identity = keys.load_identity("alice")
    old_serial = credentials.leaf_serial
    assert certs.ensure_c2pa_credentials(identity).leaf_serial == old_serial
    chain = (credentials.directory / certs.LEAF_CERT).read_bytes()
    root = x509.load_pem_x509_certificate(credentials.ca_pem)
    ca_key = serialization.load_pem_private_key((credentials.directory / certs.CA_KEY).read_bytes(), None)
    leaf = x509.load_pem_x509_certificates(chain)[0]
    expired = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(root.subject)
               .public_key(leaf.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2021, 1, 1))
               .sign(ca_key, None))
    (credentials.directory / certs.LEAF_CERT).write_bytes(expired.public_bytes(serialization.Encoding.PEM)
                                                          + credentials.ca_pem)
    renewed = certs.ensure_c2pa_credentials(identity)
    assert renewed.leaf_serial not in (old_serial, str(expired.serial_number))
    assert renewed.leaf.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc)


def test_keys_new_makes_identity_and_c2pa_files_with_private_modes(home, capsys):
    assert main(["keys", "new", "--name", "studio", "--allow", "ai_inference"]) == 0
    out = capsys.readouterr().out
    directory = home / "keys" / "studio"
    assert "C2PA trust anchor to hand out" in out and str(directory / "c2pa" / "ca.pem") in out
    assert "ai_inference allowed" in out and "ai_training notAllowed" in out
    for private in (directory / keys.PRIVATE_KEY, directory / "c2pa" / certs.CA_KEY,
                    directory / "c2pa" / certs.LEAF_KEY):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert main(["keys", "list"]) == 0
    assert "studio" in capsys.readouterr().out
    assert main(["keys", "show", "studio"]) == 0
    shown = capsys.readouterr().out
    assert keys.load_identity("studio").key_id in shown and "cawg.ai_inference" in shown
    assert main(["keys", "show", "studio", "--pem"]) == 0
    assert capsys.readouterr().out.startswith("-----BEGIN PUBLIC KEY-----")
    assert main(["keys", "new", "--name", "studio"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "new", "--name", "studio", "--c2pa-only", "--overwrite"]) == 0


def test_reading_a_broken_file_reports_invalid_not_a_crash(tmp_path, credentials):
    path = make_file(tmp_path, ".png")
    embed_c2pa(path, credentials, POINTER, certs.training_mining_entries({}))
    data = path.read_bytes()
    start = data.index(b"caBX") + 40  # inside the C2PA manifest store
    broken = data[:start] + bytes(64) + data[start + 64:]
    path.write_bytes(broken)
    report = read_c2pa(path, credentials.ca_pem, "alice's CA")
    assert report.present and report.state == "Invalid", report
