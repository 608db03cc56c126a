"""Signed provenance manifests: a JSON sidecar ``<file>.manifest.json`` that says what made a file, and who.

The sidecar (schema ``genchain.manifest/1``) holds

* ``artefact``: file name, SHA-256 and size of the final bytes (after the watermark and the C2PA embedding), media
  type and kind (text, image, audio, video);
* ``generation``: what made it: the run (dir name and path, family, model, task, parameter count, SHA-256 of
  ``model.safetensors``, the training data's manifest hash, sources and licences, the run it was fine-tuned from,
  all read from the run's ``card.json``), the sampling parameters, the seed, and the SHA-256 of the prompt (never
  the prompt itself: prompts can be private);
* ``watermark``: what the watermarking step reported (scheme, applied, parameters, or why not);
* ``c2pa``: whether a C2PA manifest is embedded in the file (and its certificate), or why not;
* ``created``, ``software``, and ``signer``: identity name, key id and raw Ed25519 public key (hex);
* ``signature``: ``{"algorithm": "Ed25519", "value": hex}``: an Ed25519 signature (RFC 8032) by the signer over
  the canonical JSON (sorted keys, no whitespace, UTF-8; see :mod:`genchain.provenance.canonical`) of every
  top-level field except ``signature`` and ``receipt``;
* ``receipt`` (added after signing, so not covered by the signature): the ledger entry's index, its leaf hash and
  the signed tree head returned when it was appended. It carries its own proof: the tree head is signed by the
  log operator, and ``genchain verify`` checks the entry against it with an inclusion proof and a consistency
  proof to the ledger's current head.

The file is written in one exact form (:func:`serialize`: sorted keys, two-space indent, UTF-8, final newline), and
the verifier requires that form, so an edit that would not change the parsed values (whitespace, ``1e-05`` written
``1E-05``, upper-case hex) is still caught. The ledger entry names the manifest by :func:`manifest_digest`: the
SHA-256 of the canonical JSON of everything but the receipt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from genchain import __version__, rundir
from genchain.errors import InputError, ProvenanceError
from genchain.fileio import atomic_write_bytes, sha256_file
from genchain.provenance.canonical import canonical_json
from genchain.provenance.keys import Identity, key_id, public_key_from_text, verify_signature

SCHEMA = "genchain.manifest/1"
SUFFIX = ".manifest.json"
KINDS = ("text", "image", "audio", "video")
UNSIGNED_FIELDS = ("signature", "receipt")
SIGNED_FIELDS = ("schema", "artefact", "generation", "watermark", "c2pa", "created", "software", "signer")
_HEX = re.compile(r"^[0-9a-f]*$")


def sidecar_path(path: str | Path) -> Path:
    """Where the manifest of ``path`` lives: ``<file>.manifest.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=16)
def _checkpoint_sha256(path: str, mtime_ns: int, size: int) -> str:
    """Hash a checkpoint once per version of the file: a batch of 64 images shares one model."""
    return sha256_file(path)


def describe_run(run_dir: str | Path) -> dict[str, Any]:
    """What a manifest records of the run that made a file, read from its ``card.json`` (what is there)."""
    run_dir = Path(run_dir)
    card = rundir.read_card(run_dir)
    weights = run_dir / rundir.BEST_WEIGHTS
    checkpoint = None
    if weights.is_file():
        stat = weights.stat()
        checkpoint = _checkpoint_sha256(str(weights.resolve()), stat.st_mtime_ns, stat.st_size)
    data = card.get("data") or {}
    return {
        "name": run_dir.resolve().name,
        "path": str(run_dir.resolve()),
        "family": card.get("family"),
        "model": card.get("model"),
        "task": card.get("task"),
        "params": card.get("params"),
        "checkpoint": rundir.BEST_WEIGHTS if checkpoint else None,
        "checkpoint_sha256": checkpoint,
        "init": card.get("init"),
        "data": {key: data[key] for key in ("manifest_sha256", "licences", "sources", "tokenizer_sha256")
                 if key in data},
    }


def generation_block(*, run_dir: str | Path | None, params: dict[str, Any], seed: int | None,
                     prompt: str | None) -> dict[str, Any]:
    """The ``generation`` field: the run, the parameters, the seed and the prompt's SHA-256."""
    return {"run": describe_run(run_dir) if run_dir is not None else None,
            "parameters": params, "seed": seed,
            "prompt_sha256": sha256_text(prompt) if prompt is not None else None}


def generation_sha256(generation: dict[str, Any]) -> str:
    """The hash the embedded C2PA manifest carries to point at this sidecar's ``generation`` block."""
    return hashlib.sha256(canonical_json(generation)).hexdigest()


def build_manifest(path: str | Path, *, kind: str, generation: dict[str, Any], watermark: dict[str, Any] | None,
                   c2pa: dict[str, Any], signer: Identity, media_type: str) -> dict[str, Any]:
    """The unsigned manifest of the file at ``path`` as it is now on disk (hash and size of its final bytes)."""
    if kind not in KINDS:
        raise InputError(f"artefact kind {kind!r}: use one of {', '.join(KINDS)}")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; a manifest describes a file that has been written")
    return {
        "schema": SCHEMA,
        "artefact": {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size,
                     "media_type": media_type, "kind": kind},
        "generation": generation,
        "watermark": watermark,
        "c2pa": c2pa,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "software": {"genchain": __version__},
        "signer": {"name": signer.name, "key_id": signer.key_id, "public_key": signer.public_hex},
    }


def signed_bytes(manifest: dict[str, Any]) -> bytes:
    """Exactly what the signature covers: canonical JSON of every field but ``signature`` and ``receipt``."""
    return canonical_json({k: v for k, v in manifest.items() if k not in UNSIGNED_FIELDS})


def sign_manifest(manifest: dict[str, Any], identity: Identity) -> dict[str, Any]:
    """``manifest`` with its Ed25519 ``signature`` by ``identity`` (which must be the manifest's signer)."""
    if manifest["signer"]["key_id"] != identity.key_id:
        raise ProvenanceError(f"the manifest names signer {manifest['signer']['key_id'][:16]}, not "
                              f"{identity.name!r} ({identity.key_id[:16]})")
    unsigned = {k: v for k, v in manifest.items() if k not in UNSIGNED_FIELDS}
    return {**unsigned, "signature": {"algorithm": "Ed25519", "value": identity.sign(signed_bytes(unsigned)).hex()}}


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 (hex) of the signed manifest without its receipt: how the ledger entry names the manifest."""
    return hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "receipt"})).hexdigest()


def serialize(manifest: dict[str, Any]) -> bytes:
    """The one byte form a sidecar is written in (and must still be in when verified)."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(path, serialize(manifest))


def read_manifest(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The manifest at ``path`` and its raw bytes; ProvenanceError saying precisely why one cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ProvenanceError(f"no manifest at {path}; pass the sidecar with --manifest, or the file was never "
                              "signed (generate with signing on)")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ProvenanceError(f"{path.name} is not UTF-8 text (byte {err.start}): the manifest is damaged") from None
    except json.JSONDecodeError as err:
        raise ProvenanceError(f"{path.name} is not JSON ({err.msg} at line {err.lineno} column {err.colno}): the "
                              "manifest is damaged or was edited") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise ProvenanceError(f"{path.name} is not a genchain manifest (schema {found!r}, expected {SCHEMA!r})")
    missing = [name for name in (*SIGNED_FIELDS, "signature") if name not in manifest]
    if missing:
        raise ProvenanceError(f"{path.name} lacks {', '.join(missing)}: the manifest is incomplete or was edited")
    return manifest, raw


def check_form(manifest: dict[str, Any], raw: bytes) -> None:
    """Raise unless ``raw`` is exactly how genchain writes ``manifest``: catches edits that keep the values."""
    expected = serialize(manifest)
    if raw != expected:
        at = next((i for i, (a, b) in enumerate(zip(raw, expected, strict=False)) if a != b),
                  min(len(raw), len(expected)))
        raise ProvenanceError(f"the manifest's bytes differ from the form genchain writes (first at byte {at}): "
                              "it was edited after signing")


def hex_field(value: Any, size: int, what: str) -> bytes:
    """``value`` as bytes when it is lower-case hex of ``size`` bytes; one spelling only, so no silent variants."""
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.match(value):
        raise ProvenanceError(f"{what} is not {size} bytes of lower-case hex: the manifest was edited")
    return bytes.fromhex(value)


def check_signature(manifest: dict[str, Any]) -> str:
    """Verify the Ed25519 signature against the public key the manifest names; returns the signer's key id.

    Checks, each with its own message: the algorithm, the hex spellings, that the key id is the SHA-256 of the
    public key, and the signature itself over :func:`signed_bytes`.
    """
    signer, signature = manifest.get("signer"), manifest.get("signature")
    if not isinstance(signer, dict) or not isinstance(signature, dict):
        raise ProvenanceError("the manifest's signer or signature field is not an object")
    if signature.get("algorithm") != "Ed25519" or set(signature) != {"algorithm", "value"}:
        raise ProvenanceError(f"unsupported signature {sorted(signature)} / {signature.get('algorithm')!r}; "
                              "genchain signs with Ed25519")
    value = hex_field(signature.get("value"), 64, "the signature")
    raw_key = hex_field(signer.get("public_key"), 32, "the signer's public key")
    public_key = public_key_from_text(raw_key.hex())
    if hex_field(signer.get("key_id"), 32, "the signer's key id").hex() != key_id(public_key):
        raise ProvenanceError("the signer's key id is not the SHA-256 of its public key: the manifest was edited")
    if not verify_signature(public_key, value, signed_bytes(manifest)):
        raise ProvenanceError(f"the signature does not verify with the key it names ({signer['key_id'][:16]}): "
                              "the manifest was changed after signing, or the signature was forged")
    return signer["key_id"]
