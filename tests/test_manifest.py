"""Signed manifests: what is recorded, what the signature covers, and each way a sidecar can be wrong."""

import json

import pytest

from genchain import rundir
from genchain.errors import InputError, ProvenanceError
from genchain.fileio import sha256_file
from genchain.provenance import keys
from genchain.provenance import manifest as mf
from genchain.provenance.canonical import canonical_json


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "gc"))
    return tmp_path / "gc"


@pytest.fixture()
def run_dir(tmp_path):
    """A run dir as training leaves it: a card with data provenance and a checkpoint file."""
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    rundir.write_card(run, {"family": "text", "model": "gpt", "task": "causal-lm", "params": 1234,
                            "data": {"dir": "/data/x", "manifest_sha256": "ab" * 32, "tokenizer_sha256": "cd" * 32,
                                     "sources": ["corpus.txt"], "licences": ["CC-BY-4.0"]},
                            "init": None, "environment": {"torch": "x"}})
    (run / rundir.BEST_WEIGHTS).write_bytes(b"weights" * 100)
    return run


def signed_manifest(tmp_path, identity, run_dir=None, text="a generated line\n"):
    artefact = tmp_path / "out.txt"
    artefact.write_text(text)
    generation = mf.generation_block(run_dir=run_dir, params={"temperature": 0.8, "top_k": 200}, seed=7,
                                     prompt="ROMEO:")
    unsigned = mf.build_manifest(artefact, kind="text", generation=generation, watermark=None,
                                 c2pa={"embedded": False, "reason": "text"}, signer=identity,
                                 media_type="text/plain")
    return artefact, mf.sign_manifest(unsigned, identity)


def test_manifest_records_the_run_the_parameters_and_only_the_prompt_hash(tmp_path, run_dir):
    identity = keys.create_identity("alice")
    artefact, manifest = signed_manifest(tmp_path, identity, run_dir)
    assert manifest["artefact"] == {"file": "out.txt", "sha256": sha256_file(artefact), "size": 17,
                                    "media_type": "text/plain", "kind": "text"}
    run = manifest["generation"]["run"]
    assert run["checkpoint_sha256"] == sha256_file(run_dir / rundir.BEST_WEIGHTS)
    assert run["data"] == {"manifest_sha256": "ab" * 32, "tokenizer_sha256": "cd" * 32,
                           "sources": ["corpus.txt"], "licences": ["CC-BY-4.0"]}
    assert run["name"] == "tiny" and run["family"] == "text" and run["params"] == 1234
    assert manifest["generation"]["prompt_sha256"] == mf.sha256_text("ROMEO:")
    assert "ROMEO" not in json.dumps(manifest)
    assert manifest["signer"] == {"name": "alice", "key_id": identity.key_id, "public_key": identity.public_hex}
    assert mf.check_signature(manifest) == identity.key_id


def test_signature_covers_everything_but_signature_and_receipt(tmp_path):
    identity = keys.create_identity("alice")
    _, manifest = signed_manifest(tmp_path, identity)
    body = {k: v for k, v in manifest.items() if k not in ("signature", "receipt")}
    assert mf.signed_bytes(manifest) == canonical_json(body)
    assert keys.verify_signature(identity.public_key, bytes.fromhex(manifest["signature"]["value"]),
                                 canonical_json(body))
    with_receipt = {**manifest, "receipt": {"index": 3}}
    assert mf.check_signature(with_receipt) == identity.key_id  # the receipt is checked by its own proofs
    for field, change in [("generation", {"seed": 8}), ("watermark", {"applied": True}), ("created", "2000-01-01"),
                          ("c2pa", {"embedded": True})]:
        edited = {**manifest, field: change}
        with pytest.raises(ProvenanceError, match="does not verify"):
            mf.check_signature(edited)


def test_round_trip_through_the_file_keeps_the_exact_form(tmp_path):
    identity = keys.create_identity("alice")
    artefact, manifest = signed_manifest(tmp_path, identity)
    path = mf.sidecar_path(artefact)
    assert path.name == "out.txt.manifest.json"
    mf.write_manifest(path, manifest)
    read, raw = mf.read_manifest(path)
    assert read == manifest
    mf.check_form(read, raw)
    path.write_bytes(raw.replace(b'  "schema"', b'\t"schema"'))  # same JSON values, other bytes
    read, raw = mf.read_manifest(path)
    assert read == manifest and mf.check_signature(read) == identity.key_id
    with pytest.raises(ProvenanceError, match="edited after signing"):
        mf.check_form(read, raw)


def test_unreadable_manifests_say_why(tmp_path):
    path = tmp_path / "x.manifest.json"
    with pytest.raises(ProvenanceError, match="no manifest at"):
        mf.read_manifest(path)
    path.write_text('{"schema": "genchain.manifest/1", ')
    with pytest.raises(ProvenanceError, match="is not JSON .* at line 1"):
        mf.read_manifest(path)
    path.write_bytes(b'{"schema": "\xff"}')
    with pytest.raises(ProvenanceError, match="not UTF-8"):
        mf.read_manifest(path)
    path.write_text('{"schema": "other/2"}')
    with pytest.raises(ProvenanceError, match="not a genchain manifest"):
        mf.read_manifest(path)
    path.write_text('{"schema": "genchain.manifest/1", "artefact": {}}')
    with pytest.raises(ProvenanceError, match="lacks generation, watermark"):
        mf.read_manifest(path)


def test_forged_and_respelled_signatures_are_refused(tmp_path):
    alice, mallory = keys.create_identity("alice"), keys.create_identity("mallory")
    _, manifest = signed_manifest(tmp_path, alice)
    forged = {**manifest, "signature": {"algorithm": "Ed25519",
                                        "value": mallory.sign(mf.signed_bytes(manifest)).hex()}}
    with pytest.raises(ProvenanceError, match="forged"):
        mf.check_signature(forged)
    upper = {**manifest, "signature": {**manifest["signature"], "value": manifest["signature"]["value"].upper()}}
    with pytest.raises(ProvenanceError, match="lower-case hex"):
        mf.check_signature(upper)
    swapped_key = {**manifest, "signer": {**manifest["signer"], "public_key": mallory.public_hex}}
    with pytest.raises(ProvenanceError, match="key id is not the SHA-256"):
        mf.check_signature(swapped_key)
    other_alg = {**manifest, "signature": {**manifest["signature"], "algorithm": "ES256"}}
    with pytest.raises(ProvenanceError, match="Ed25519"):
        mf.check_signature(other_alg)
    with pytest.raises(ProvenanceError, match="names signer"):
        mf.sign_manifest(manifest, mallory)


def test_bad_kind_and_missing_file(tmp_path):
    identity = keys.create_identity("alice")
    generation = mf.generation_block(run_dir=None, params={}, seed=None, prompt=None)
    with pytest.raises(InputError, match="artefact kind 'poem'"):
        mf.build_manifest(tmp_path / "x.txt", kind="poem", generation=generation, watermark=None, c2pa={},
                          signer=identity, media_type="text/plain")
    with pytest.raises(InputError, match="does not exist"):
        mf.build_manifest(tmp_path / "x.txt", kind="text", generation=generation, watermark=None, c2pa={},
                          signer=identity, media_type="text/plain")
