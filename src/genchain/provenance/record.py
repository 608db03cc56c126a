"""Recording a generated file: the one provenance step every generator calls after writing its output.

Order (each step works on the final bytes of the one before, and every write is atomic):

1. the caller has already applied the watermark (it changes the content, so it comes first);
2. C2PA: a signed C2PA manifest is embedded where the format allows (the file is rewritten atomically);
3. the SHA-256 of the file's final bytes;
4. the signed sidecar ``<file>.manifest.json`` (see :mod:`genchain.provenance.manifest`);
5. a ledger entry of kind ``artefact``: ``{"sha256", "manifest_sha256", "signer", "media", "kind"}``;
6. the ledger receipt (index, leaf hash, signed tree head) written into the sidecar.

A failure after the file exists never removes it: when C2PA cannot be embedded the sidecar says why, and when the
ledger cannot be written the signed sidecar stays (without receipt) and the error says that the file is not in the
ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from genchain.errors import GenchainError, InputError, ProvenanceError
from genchain.provenance import manifest as mf
from genchain.provenance.c2pa_embed import can_embed, embed_c2pa, media_type
from genchain.provenance.certs import ensure_c2pa_credentials, training_mining_entries
from genchain.provenance.certs import training_mining as owner_training_mining
from genchain.provenance.keys import Identity, ensure_identity

if TYPE_CHECKING:
    from genchain.provenance.ledger import Ledger


@dataclass(frozen=True)
class RecordResult:
    """What was recorded for one file."""

    path: Path
    manifest_path: Path
    sha256: str
    manifest_sha256: str
    signer: str
    c2pa: dict[str, Any]
    ledger_index: int

    def summary(self) -> str:
        """One line for people: the file, its hash, C2PA, the ledger entry."""
        c2pa = "C2PA embedded" if self.c2pa.get("embedded") else f"no C2PA ({self.c2pa.get('reason')})"
        return (f"signed {self.path} (sha256 {self.sha256[:12]}, {c2pa}, ledger entry {self.ledger_index}) "
                f"-> {self.manifest_path.name}")


def record_artefact(path: str | Path, *, kind: str, run_dir: Path | None, params: dict[str, Any], seed: int | None,
                    prompt: str | None, watermark: dict[str, Any] | None, identity: Identity | None = None,
                    ledger: Ledger | str | None = None, embed_c2pa: bool = True,
                    training_mining: dict[str, str] | None = None) -> RecordResult:
    """Embed C2PA, sign the sidecar manifest and enter the file in the ledger.

    Args:
        path: The generated file, already written (and watermarked, if it is).
        kind: text, image, audio or video.
        run_dir: The run that made it (its card and checkpoint hash go into the manifest); None if none.
        params: Generation parameters worth recording (sampling settings, label, ...).
        seed: The seed, when there was one.
        prompt: The prompt; only its SHA-256 is recorded.
        watermark: What the watermarking step reported, or None when no watermark step ran.
        identity: Who signs; default the ``default`` identity (created on first use).
        ledger: An open Ledger, a ledger URL/path, or None for ``$GENCHAIN_HOME/ledger.db``.
        embed_c2pa: False records the sidecar only.
        training_mining: CAWG entry -> use, overriding the owner's recorded choices for this file.
    """
    if ledger is None or isinstance(ledger, (str, Path)):
        from genchain.provenance.ledger import Ledger

        opened = Ledger.open(ledger)
        try:
            return record_artefact(path, kind=kind, run_dir=run_dir, params=params, seed=seed, prompt=prompt,
                                   watermark=watermark, identity=identity, ledger=opened, embed_c2pa=embed_c2pa,
                                   training_mining=training_mining)
        finally:
            opened.close()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; record a file after it has been written")
    identity = identity or ensure_identity()[0]
    sidecar = mf.sidecar_path(path)
    generation = mf.generation_block(run_dir=run_dir, params=params, seed=seed, prompt=prompt)
    c2pa = _embed(path, identity, sidecar, generation, embed_c2pa, training_mining)
    signed = mf.sign_manifest(mf.build_manifest(path, kind=kind, generation=generation, watermark=watermark,
                                                c2pa=c2pa, signer=identity, media_type=media_type(path)), identity)
    mf.write_manifest(sidecar, signed)
    digest = mf.manifest_digest(signed)
    body = {"sha256": signed["artefact"]["sha256"], "manifest_sha256": digest, "signer": identity.key_id,
            "media": signed["artefact"]["media_type"], "kind": kind}
    try:
        entry = ledger.append("artefact", body)
        tree_head = ledger.signed_tree_head(entry.index + 1)
    except (GenchainError, OSError) as err:
        raise ProvenanceError(f"{path} is written and signed ({sidecar.name}) but NOT entered in the ledger: {err}; "
                              "fix the ledger and sign it again") from None
    head = tree_head.to_json()
    signed["receipt"] = {"index": entry.index, "leaf_hash": entry.leaf_hash.hex(),
                         "tree_head": json.loads(head) if isinstance(head, str) else head}
    mf.write_manifest(sidecar, signed)
    return RecordResult(path, sidecar, body["sha256"], digest, identity.key_id, c2pa, entry.index)


def _embed(path: Path, identity: Identity, sidecar: Path, generation: dict[str, Any], enabled: bool,
           training_mining: dict[str, str] | None) -> dict[str, Any]:
    """Embed C2PA when the format and the caller allow; otherwise say why not (the sidecar records it)."""
    if not enabled:
        return {"embedded": False, "reason": "C2PA embedding was turned off; the signed sidecar is the manifest"}
    if not can_embed(path):
        return {"embedded": False, "reason": f"{path.suffix or 'extension-less'} files cannot carry C2PA; the "
                                             "signed sidecar is the manifest"}
    credentials = ensure_c2pa_credentials(identity)
    entries = (training_mining_entries(training_mining) if training_mining is not None
               else owner_training_mining(identity))
    pointer = {"manifest": sidecar.name, "signer_key_id": identity.key_id,
               "generation_sha256": mf.generation_sha256(generation)}
    try:
        return embed_c2pa(path, credentials, pointer, entries)
    except ProvenanceError as err:  # the file is untouched (the rewrite is atomic); say so in the manifest
        return {"embedded": False, "reason": str(err)}


def record_files(items: Iterable[tuple[Path, dict[str, Any] | None]], *, kind: str, run_dir: Path | None,
                 params: dict[str, Any], seed: int | None, prompt: str | None, key: str = "default",
                 ledger: str | None = None, embed_c2pa: bool = True) -> list[RecordResult]:
    """Record several files made by one command: one identity, one ledger connection, a progress bar.

    Args:
        items: (path, watermark report) per file.
        key: The name of the signing identity (created on first use).
        ledger: Ledger URL or path; None for the default ledger.
    """
    from genchain.provenance.ledger import Ledger

    items = list(items)
    identity = ensure_identity(key)[0]
    opened = Ledger.open(ledger)
    try:
        return [record_artefact(path, kind=kind, run_dir=run_dir, params=params, seed=seed, prompt=prompt,
                                watermark=watermark, identity=identity, ledger=opened, embed_c2pa=embed_c2pa)
                for path, watermark in tqdm(items, desc="signing", unit="file", disable=len(items) < 8)]
    finally:
        opened.close()
