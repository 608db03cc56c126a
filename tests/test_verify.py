"""`genchain verify`: a recorded file passes every check, and each kind of bad input fails the right one."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from genchain.cli import main
from genchain.provenance import keys
from genchain.provenance import manifest as mf
from genchain.provenance.ledger import Ledger
from genchain.provenance.merkle import SignedTreeHead, tree_head_bytes
from genchain.provenance.record import record_artefact
from genchain.provenance.verify import verify_artefact


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "gc"))
    return tmp_path / "gc"


@pytest.fixture()
def ledger_url(tmp_path):
    return str(tmp_path / "ledger.db")


def png(path, seed=0, size=24):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def record(path, ledger_url, kind="image", **extra):
    return record_artefact(path, kind=kind, run_dir=None, params={"temperature": 0.8}, seed=1, prompt="p",
                           watermark=extra.pop("watermark", None), ledger=ledger_url, **extra)


def statuses(report):
    return {check.name: check.status for check in report.checks}


def details(report):
    return {check.name: check.detail for check in report.checks}


def test_a_recorded_png_and_text_pass_every_check(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    result = record(image, ledger_url)
    assert result.c2pa["embedded"] and result.ledger_index == 0
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report) == {"manifest": "ok", "integrity": "ok", "signature": "ok", "ledger": "ok",
                                "c2pa": "ok", "watermark": "skipped"}, report.render()
    assert "Trusted by the local CA of identity 'default'" in details(report)["c2pa"]
    text = tmp_path / "s.txt"
    text.write_text("a generated line\n")
    record(text, ledger_url, kind="text")
    report = verify_artefact(text, ledger=ledger_url)
    assert report.ok and statuses(report)["c2pa"] == "skipped", report.render()
    assert "cannot carry C2PA" in details(report)["c2pa"]
    manifest = json.loads(mf.sidecar_path(text).read_text())
    assert manifest["receipt"]["index"] == 1 and manifest["receipt"]["tree_head"]["tree_size"] == 2


def test_a_tampered_file_fails_integrity_and_c2pa(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    data = bytearray(image.read_bytes())
    data[-20] ^= 1
    image.write_bytes(bytes(data))
    report = verify_artefact(image, ledger=ledger_url)
    assert not report.ok
    assert statuses(report)["integrity"] == "failed" and "changed after signing" in details(report)["integrity"]
    assert statuses(report)["c2pa"] == "failed" and "assertion.dataHash.mismatch" in details(report)["c2pa"]
    assert statuses(report)["ledger"] == "failed" and "not this file's" in details(report)["ledger"]


def test_a_manifest_for_another_file(tmp_path, ledger_url):
    a, b = png(tmp_path / "a.png", 0), png(tmp_path / "b.png", 1)
    record(a, ledger_url)
    record(b, ledger_url)
    report = verify_artefact(a, manifest=mf.sidecar_path(b), ledger=ledger_url)
    assert "describes 'b.png', not 'a.png'" in details(report)["integrity"]
    assert statuses(report)["signature"] == "ok"  # b's manifest is genuine: it is just not a's
    assert statuses(report)["c2pa"] == "failed" and "'a.png.manifest.json', not this one" in details(report)["c2pa"]
    assert statuses(report)["ledger"] == "failed"


def test_a_forged_signature_and_a_wrong_key(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    sidecar = mf.sidecar_path(image)
    manifest = json.loads(sidecar.read_text())
    forged = {**manifest, "signature": {"algorithm": "Ed25519", "value": "00" * 64}}
    mf.write_manifest(sidecar, forged)
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["signature"] == "failed" and "forged" in details(report)["signature"]
    # someone else's key, calling itself "default", re-signs an edited manifest
    impostor = keys.create_identity("default", home=tmp_path / "elsewhere")
    edited = {k: v for k, v in manifest.items() if k not in ("signature", "receipt")}
    edited["generation"] = {**edited["generation"], "seed": 99}
    edited["signer"] = {"name": "default", "key_id": impostor.key_id, "public_key": impostor.public_hex}
    mf.write_manifest(sidecar, {**mf.sign_manifest(edited, impostor), "receipt": manifest["receipt"]})
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["signature"] == "failed" and "a wrong key" in details(report)["signature"]
    assert statuses(report)["ledger"] == "failed" and "another manifest" in details(report)["ledger"]
    assert statuses(report)["c2pa"] == "failed"  # the C2PA pointer names the real signer and generation


def test_a_manifest_that_is_not_json_and_a_stripped_sidecar(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    result = record(image, ledger_url)
    sidecar = mf.sidecar_path(image)
    sidecar.write_text(sidecar.read_text()[:-30])
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["manifest"] == "failed" and "is not JSON" in details(report)["manifest"]
    assert "integrity" not in statuses(report)
    sidecar.unlink()
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["manifest"] == "failed" and "no manifest at" in details(report)["manifest"]
    # the ledger and C2PA still say where it came from
    assert statuses(report)["ledger"] == "ok" and f"entry {result.ledger_index}" in details(report)["ledger"]
    assert statuses(report)["c2pa"] == "ok"


def test_an_edit_that_keeps_the_json_values_is_caught(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    sidecar = mf.sidecar_path(image)
    sidecar.write_bytes(sidecar.read_bytes().replace(b'\n  "schema"', b'\n\t"schema"'))
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["manifest"] == "failed" and "edited after signing" in details(report)["manifest"]
    assert statuses(report)["signature"] == "ok"


def test_a_missing_ledger_entry_and_a_rolled_back_ledger(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    report = verify_artefact(image, ledger=str(tmp_path / "other.db"))
    assert statuses(report)["ledger"] == "failed" and "no ledger at" in details(report)["ledger"]
    assert not (tmp_path / "other.db").exists()
    Ledger.open(tmp_path / "empty.db").close()
    report = verify_artefact(image, ledger=str(tmp_path / "empty.db"))
    assert "tree head has 1 entries but the ledger only 0" in details(report)["ledger"]
    snapshot = tmp_path / "snapshot.db"
    shutil.copy(ledger_url, snapshot)
    later = png(tmp_path / "b.png", 1)
    record(later, ledger_url)
    report = verify_artefact(later, ledger=str(snapshot))
    assert "truncated or rolled back" in details(report)["ledger"]


def test_forged_receipts(tmp_path, ledger_url):
    a, b = png(tmp_path / "a.png", 0), png(tmp_path / "b.png", 1)
    record(a, ledger_url)
    record(b, ledger_url)
    sidecar = mf.sidecar_path(a)
    manifest = json.loads(sidecar.read_text())
    receipt_b = json.loads(mf.sidecar_path(b).read_text())["receipt"]
    mf.write_manifest(sidecar, {**manifest, "receipt": receipt_b})  # b's genuine receipt on a's manifest
    assert "not this file's" in details(verify_artefact(a, ledger=ledger_url))["ledger"]
    mf.write_manifest(sidecar, {**manifest, "receipt": {**manifest["receipt"], "index": 1}})
    assert "outside the receipt's tree head" in details(verify_artefact(a, ledger=ledger_url))["ledger"]
    mf.write_manifest(sidecar, {**manifest, "receipt": {**receipt_b, "leaf_hash": manifest["receipt"]["leaf_hash"]}})
    assert "leaf hash differs" in details(verify_artefact(a, ledger=ledger_url))["ledger"]
    impostor = keys.create_identity("mallory")
    head = SignedTreeHead.from_json(manifest["receipt"]["tree_head"])
    fake = SignedTreeHead(head.tree_size, head.root_hash, head.timestamp, impostor.key_id, impostor.public_hex,
                          impostor.sign(tree_head_bytes(head.tree_size, head.timestamp, head.root_hash)))
    mf.write_manifest(sidecar, {**manifest, "receipt": {**manifest["receipt"], "tree_head": fake.to_json()}})
    assert "not signed by this ledger's operator" in details(verify_artefact(a, ledger=ledger_url))["ledger"]
    operator = keys.load_identity("default")  # even the operator's own signature on a wrong root fails
    wrong_root = bytes(32)
    bad = SignedTreeHead(1, wrong_root, head.timestamp, operator.key_id, operator.public_hex,
                         operator.sign(tree_head_bytes(1, head.timestamp, wrong_root)))
    mf.write_manifest(sidecar, {**manifest, "receipt": {**manifest["receipt"], "tree_head": bad.to_json()}})
    assert "does not prove into the receipt's tree head" in details(verify_artefact(a, ledger=ledger_url))["ledger"]
    upper = {**manifest["receipt"], "leaf_hash": manifest["receipt"]["leaf_hash"].upper()}
    mf.write_manifest(sidecar, {**manifest, "receipt": upper})
    assert "lower-case hex" in details(verify_artefact(a, ledger=ledger_url))["ledger"]


def test_a_truncated_ledger_database(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    Ledger.open(ledger_url).close()
    data = (tmp_path / "ledger.db").read_bytes()
    (tmp_path / "ledger.db").write_bytes(data[: len(data) // 2])
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["ledger"] == "failed", report.render()
    assert statuses(report)["integrity"] == "ok" and statuses(report)["signature"] == "ok"


def test_a_stripped_c2pa_manifest(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    Image.open(image).save(image)  # the same pixels, re-encoded without the C2PA chunk
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["c2pa"] == "failed" and "stripped" in details(report)["c2pa"]


def test_c2pa_trust_anchor_choice(tmp_path, ledger_url, home):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    ca = home / "keys" / "default" / "c2pa" / "ca.pem"
    report = verify_artefact(image, ledger=ledger_url, trust_anchor=ca)
    assert statuses(report)["c2pa"] == "ok" and f"trust anchor {ca}" in details(report)["c2pa"]
    from genchain.provenance.certs import create_c2pa_credentials

    other = create_c2pa_credentials(keys.create_identity("bob"))
    report = verify_artefact(image, ledger=ledger_url, trust_anchor=other.ca_path)
    assert statuses(report)["c2pa"] == "failed" and "does not chain to" in details(report)["c2pa"]


def test_an_image_watermark_is_detected_only_with_the_signers_key(tmp_path, ledger_url, monkeypatch):
    from genchain.provenance.watermark_image import embed_image_watermark, image_watermark_key

    identity = keys.ensure_identity()[0]
    pixels = np.random.default_rng(3).integers(60, 200, (256, 256, 3), dtype=np.uint8)
    marked, info = embed_image_watermark(pixels, image_watermark_key(identity))
    image = tmp_path / "w.png"
    Image.fromarray(marked).save(image)
    record(image, ledger_url, watermark=info)
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["watermark"] == "ok" and "detected" in details(report)["watermark"], report.render()
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "a-verifier-without-the-key"))
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["watermark"] == "skipped" and "needs the signer's key" in details(report)["watermark"]
    assert statuses(report)["signature"] == "warning" and statuses(report)["c2pa"] == "warning"
    assert report.ok


def test_verify_command_exit_codes(tmp_path, ledger_url, capsys):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    assert main(["verify", str(image), "--ledger", ledger_url]) == 0
    assert "verified: no check failed" in capsys.readouterr().out
    assert main(["verify", str(image), "--ledger", ledger_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    data = bytearray(image.read_bytes())
    data[-20] ^= 1
    image.write_bytes(bytes(data))
    assert main(["verify", str(image), "--ledger", ledger_url]) == 1
    assert "FAILED: integrity" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["verify", str(image), "--trust-anchor", str(tmp_path / "nope.pem")]) == 2


def test_a_manifest_with_fields_of_the_wrong_shape_fails_without_crashing(tmp_path, ledger_url):
    image = png(tmp_path / "a.png")
    record(image, ledger_url)
    sidecar = mf.sidecar_path(image)
    manifest = json.loads(sidecar.read_text())
    mf.write_manifest(sidecar, {**manifest, "signer": "alice", "artefact": {**manifest["artefact"], "kind": 3}})
    report = verify_artefact(image, ledger=ledger_url)
    assert statuses(report)["signature"] == "failed" and "not an object" in details(report)["signature"]
    assert statuses(report)["ledger"] == "failed" and "another manifest" in details(report)["ledger"]
    assert statuses(report)["c2pa"] == "failed" and "malformed" in details(report)["c2pa"]
    assert statuses(report)["integrity"] == "ok"
