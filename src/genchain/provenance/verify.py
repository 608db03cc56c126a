"""``genchain verify``: check a generated file against its signed manifest, the ledger, C2PA and its watermark.

Each check is reported on its own line, with its own verdict, so a person sees exactly what failed:

* manifest: the sidecar reads as JSON, has the genchain schema and is byte-for-byte in the form genchain writes;
* integrity: the SHA-256 of the file equals the manifest's (and the manifest is about this file, not another);
* signature: the Ed25519 signature verifies with the key the manifest names, and whose key that is (a local
  identity, or an unknown key that the person must recognise);
* ledger: the receipt's entry holds this file's hash and this manifest's digest; the receipt's tree head is signed
  by the ledger's operator, includes the entry (inclusion proof) and is consistent with the ledger's current head
  (consistency proof, RFC 6962/9162); without a sidecar, the entry is found by the file's hash;
* c2pa: the embedded C2PA manifest validates (Trusted with a trust anchor; the signer's local CA by default), and
  points back to this sidecar;
* watermark: detected with the signer's secret, when that identity is on this machine (an image mark that is
  missing fails; a text mark under the z threshold is a warning: detection is statistical and short texts can
  stay under it).

A check is ``ok``, ``failed``, ``warning`` (nothing wrong found, but not proven either) or ``skipped``;
:attr:`VerifyReport.ok` is False when any check failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genchain import rundir
from genchain.errors import GenchainError, InputError, ProvenanceError
from genchain.fileio import sha256_file
from genchain.provenance import manifest as mf
from genchain.provenance.c2pa_embed import C2paReport, can_embed, describe, read_c2pa
from genchain.provenance.certs import C2PA_DIR, CA_CERT
from genchain.provenance.keys import Identity, genchain_home, identity_dir, list_identities, load_identity

if TYPE_CHECKING:
    from genchain.provenance.ledger import Ledger
    from genchain.provenance.merkle import SignedTreeHead

OK, FAILED, WARNING, SKIPPED = "ok", "failed", "warning", "skipped"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


@dataclass
class VerifyReport:
    """Every check made on one file."""

    file: str
    manifest: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.status != FAILED for check in self.checks)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "manifest": self.manifest, "ok": self.ok,
                "checks": [asdict(check) for check in self.checks]}

    def render(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [self.file] + [f"  {c.name:<{width}}  {c.status:<7}  {c.detail}" for c in self.checks]
        failed = [c.name for c in self.checks if c.status == FAILED]
        lines.append("FAILED: " + ", ".join(failed) if failed else "verified: no check failed")
        return "\n".join(lines)


def verify_artefact(path: str | Path, *, manifest: str | Path | None = None, ledger: Ledger | str | None = None,
                    trust_anchor: str | Path | None = None, run_dir: str | Path | None = None) -> VerifyReport:
    """Run every check on ``path``.

    Args:
        path: The generated file.
        manifest: Its sidecar; default ``<file>.manifest.json``.
        ledger: An open Ledger, a ledger URL/path, or None for ``$GENCHAIN_HOME/ledger.db``.
        trust_anchor: A PEM root certificate to validate C2PA against; default the signer's local CA.
        run_dir: Where the run that made a text file is now (for the tokenizer the text watermark needs);
            default the path the manifest records.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; pass the generated file to verify")
    manifest_path = Path(manifest) if manifest else mf.sidecar_path(path)
    report = VerifyReport(str(path), str(manifest_path))
    actual = sha256_file(path)
    record = _check_manifest(report, manifest_path)
    signer = None
    if record is not None:
        _guarded(report, "integrity", _check_integrity, record, path, actual)
        signer = _guarded(report, "signature", _check_signature, record)
    _guarded(report, "ledger", _check_ledger, record, actual, ledger)
    _guarded(report, "c2pa", _check_c2pa, record, path, trust_anchor)
    _guarded(report, "watermark", _check_watermark, record, path, signer, run_dir)
    return report


def _guarded(report: VerifyReport, name: str, check: Callable[..., Any], *args: Any) -> Any:
    """Run one check; a manifest whose fields have the wrong shape fails that check instead of crashing verify."""
    try:
        return check(report, *args)
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        report.add(name, FAILED, f"the manifest is malformed ({type(err).__name__}: {err}): it was edited")
        return None


def _check_manifest(report: VerifyReport, manifest_path: Path) -> dict[str, Any] | None:
    try:
        record, raw = mf.read_manifest(manifest_path)
    except ProvenanceError as err:
        report.add("manifest", FAILED, str(err))
        return None
    try:
        mf.check_form(record, raw)
    except ProvenanceError as err:
        report.add("manifest", FAILED, str(err))
        return record
    report.add("manifest", OK, f"{manifest_path.name} ({mf.SCHEMA})")
    return record


def _check_integrity(report: VerifyReport, record: dict[str, Any], path: Path, actual: str) -> None:
    artefact = record.get("artefact")
    if not isinstance(artefact, dict):
        report.add("integrity", FAILED, "the manifest has no artefact object")
        return
    try:
        expected = mf.hex_field(artefact.get("sha256"), 32, "the artefact's sha256").hex()
    except ProvenanceError as err:
        report.add("integrity", FAILED, str(err))
        return
    size = path.stat().st_size
    if actual == expected and artefact.get("size") == size:
        report.add("integrity", OK, f"sha256 {actual[:16]}… matches ({size:,} bytes)")
    elif artefact.get("file") != path.name:
        report.add("integrity", FAILED, f"the manifest describes {artefact.get('file')!r}, not {path.name!r} "
                                        f"(sha256 {actual[:16]}… vs {expected[:16]}…): a manifest for another file")
    else:
        report.add("integrity", FAILED, f"the file changed after signing: sha256 {actual[:16]}… ({size:,} bytes), "
                                        f"the manifest says {expected[:16]}… ({artefact.get('size')} bytes)")


def _local_identity(key_id: str | None) -> Identity | None:
    """The identity on this machine whose key id is ``key_id`` (with its private key), if any."""
    for entry in list_identities():
        if key_id and entry.get("key_id") == key_id:
            try:
                return load_identity(entry["name"])
            except ProvenanceError:
                return None
    return None


def _check_signature(report: VerifyReport, record: dict[str, Any]) -> Identity | None:
    try:
        key_id = mf.check_signature(record)
    except ProvenanceError as err:
        report.add("signature", FAILED, str(err))
        return None
    name = record["signer"].get("name")
    local = _local_identity(key_id)
    if local is not None:
        report.add("signature", OK, f"Ed25519 by {local.name!r} (key {key_id[:16]}…), a local identity")
        return local
    same_name = [e for e in list_identities() if e.get("name") == name]
    if same_name:
        report.add("signature", FAILED, f"signed by key {key_id[:16]}… calling itself {name!r}, but the local "
                                        f"identity {name!r} has key {same_name[0]['key_id'][:16]}…: a wrong key")
    else:
        report.add("signature", WARNING, f"valid Ed25519 signature by key {key_id[:16]}… ({name!r}), not an "
                                         "identity on this machine: confirm the key belongs to who you expect")
    return None


def _check_ledger(report: VerifyReport, record: dict[str, Any] | None, actual: str,
                  ledger: Ledger | str | None) -> None:
    from genchain.provenance.ledger import Ledger

    if ledger is None or isinstance(ledger, (str, Path)):
        missing = _missing_ledger_file(ledger)
        if missing is not None:  # opening would create an empty ledger: say where it is not instead
            report.add("ledger", FAILED, f"no ledger at {missing}: the file was recorded in another ledger (pass "
                                         "--ledger URL), or this ledger was deleted")
            return
        try:
            opened = Ledger.open(ledger)
        except GenchainError as err:
            report.add("ledger", FAILED, f"the ledger cannot be read: {err}")
            return
        try:
            _check_ledger(report, record, actual, opened)
        finally:
            opened.close()
        return
    try:
        if record is not None and "receipt" in record:
            report.add("ledger", *_check_receipt(ledger, record, actual))
        else:
            report.add("ledger", *_find_by_hash(ledger, record, actual))
    except GenchainError as err:  # a malformed receipt, or a ledger that fails while being read
        report.add("ledger", FAILED, str(err))


def _missing_ledger_file(ledger: str | Path | None) -> Path | None:
    """The SQLite file a ledger location names, when it does not exist (None for servers and existing files)."""
    from genchain.provenance.ledger_store import default_location

    text = str(ledger if ledger is not None else default_location())
    if "://" in text and not text.startswith("sqlite:///"):
        return None
    path = Path(text.removeprefix("sqlite:///")).expanduser()
    return None if path.exists() else path


def _current_head(ledger: Ledger) -> SignedTreeHead:
    """The ledger's latest signed tree head, checked against the operator key the ledger was created with."""
    from genchain.provenance.merkle import verify_tree_head

    current = ledger.head()
    if not verify_tree_head(current, ledger.operator_public_key) or current.tree_size != ledger.size():
        raise ProvenanceError(f"the ledger's current tree head is not signed by its operator or does not cover its "
                              f"{ledger.size()} entries: the database was altered; run `genchain ledger audit`")
    return current


def _check_receipt(ledger: Ledger, record: dict[str, Any], actual: str) -> tuple[str, str]:
    """The receipt proves itself: operator-signed head, inclusion of the entry, consistency with today's head."""
    from genchain.provenance.merkle import SignedTreeHead, verify_consistency, verify_inclusion, verify_tree_head

    receipt = record["receipt"]
    if not isinstance(receipt, dict) or set(receipt) != {"index", "leaf_hash", "tree_head"}:
        return FAILED, "the receipt is not {index, leaf_hash, tree_head}: it was edited"
    index = receipt["index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return FAILED, f"the receipt's index {index!r} is not an entry number: it was edited"
    leaf = mf.hex_field(receipt["leaf_hash"], 32, "the receipt's leaf hash")
    head = SignedTreeHead.from_json(receipt["tree_head"])
    if head.to_json() != receipt["tree_head"]:
        return FAILED, "the receipt's tree head is not in its one JSON form: it was edited"
    if not verify_tree_head(head, ledger.operator_public_key):
        return FAILED, (f"the receipt's tree head is not signed by this ledger's operator "
                        f"({ledger.operator_key_id[:16]}…): a forged receipt, or another ledger (pass --ledger)")
    current = _current_head(ledger)
    if head.tree_size > current.tree_size:
        return FAILED, (f"the receipt's tree head has {head.tree_size} entries but the ledger only "
                        f"{current.tree_size}: the ledger was truncated or rolled back, or it is another ledger")
    if not index < head.tree_size:
        return FAILED, f"entry {index} is outside the receipt's tree head (size {head.tree_size}): a forged receipt"
    entry = ledger.entry(index)
    body = entry.body
    if entry.leaf_hash != leaf:
        return FAILED, f"entry {index}'s leaf hash differs from the receipt's: a forged receipt"
    if entry.kind != "artefact" or body.get("sha256") != actual:
        return FAILED, f"entry {index} records sha256 {str(body.get('sha256'))[:16]}…, not this file's {actual[:16]}…"
    if body.get("manifest_sha256") != mf.manifest_digest(record):
        return FAILED, f"entry {index} records another manifest (digest {str(body.get('manifest_sha256'))[:16]}…)"
    if body.get("signer") != record["signer"].get("key_id"):
        return FAILED, f"entry {index} was signed by {str(body.get('signer'))[:16]}…, not the manifest's signer"
    if not verify_inclusion(leaf, index, head.tree_size, ledger.inclusion_proof(index, head.tree_size),
                            head.root_hash):
        return FAILED, f"entry {index} does not prove into the receipt's tree head (size {head.tree_size})"
    if not verify_consistency(head.tree_size, current.tree_size, head.root_hash, current.root_hash,
                              ledger.consistency_proof(head.tree_size, current.tree_size)):
        return FAILED, (f"the ledger's current head (size {current.tree_size}) is not consistent with the "
                        f"receipt's (size {head.tree_size}): the ledger was rewritten")
    if not verify_inclusion(leaf, index, current.tree_size, ledger.inclusion_proof(index, current.tree_size),
                            current.root_hash):
        return FAILED, f"entry {index} does not prove into the ledger's current head (size {current.tree_size})"
    return OK, (f"entry {index}: included in the receipt's tree head (size {head.tree_size}) and in the current one "
                f"(size {current.tree_size}), which is consistent with it")


def _find_by_hash(ledger: Ledger, record: dict[str, Any] | None, actual: str) -> tuple[str, str]:
    """No receipt to check: look the file up by its hash (a stripped sidecar still leaves the ledger entry)."""
    from genchain.provenance.merkle import verify_inclusion

    entries = [e for e in ledger.find(actual) if e.kind == "artefact"]
    if not entries:
        why = "the manifest has no receipt and " if record is not None else ""
        return FAILED, f"{why}no ledger entry holds this file's sha256 {actual[:16]}…: it was never recorded here"
    entry = entries[0]
    current = _current_head(ledger)
    if not verify_inclusion(entry.leaf_hash, entry.index, current.tree_size,
                            ledger.inclusion_proof(entry.index, current.tree_size), current.root_hash):
        return FAILED, f"entry {entry.index} holds this file's hash but does not prove into the current head"
    what = "the manifest has no receipt" if record is not None else "no sidecar"
    return (WARNING if record is not None else OK,
            f"entry {entry.index} by signer {str(entry.body.get('signer'))[:16]}… holds this file's sha256 "
            f"({what}; found by hash, inclusion proved)")


def _anchor(trust_anchor: str | Path | None, signer_key_id: str | None) -> tuple[bytes | None, str | None]:
    """The PEM to trust and how to name it: the user's file, else the signer's local CA when it is here."""
    if trust_anchor is not None:
        path = Path(trust_anchor)
        if not path.is_file():
            raise InputError(f"trust anchor {path} does not exist; pass a PEM root certificate (e.g. the signer's "
                             f"{C2PA_DIR}/{CA_CERT})")
        pem = path.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise InputError(f"trust anchor {path} holds no PEM certificate")
        return pem, f"trust anchor {path}"
    for entry in list_identities():
        if signer_key_id and entry.get("key_id") == signer_key_id:
            ca = identity_dir(entry["name"]) / C2PA_DIR / CA_CERT
            if ca.is_file():
                return ca.read_bytes(), f"the local CA of identity {entry['name']!r} ({ca})"
    return None, None


def _check_c2pa(report: VerifyReport, record: dict[str, Any] | None, path: Path,
                trust_anchor: str | Path | None) -> None:
    if not can_embed(path):
        report.add("c2pa", SKIPPED, f"{path.suffix or 'extension-less'} files cannot carry C2PA; the sidecar is the "
                                    "manifest")
        return
    claimed = (record or {}).get("c2pa") if isinstance((record or {}).get("c2pa"), dict) else {}
    signer_key = ((record or {}).get("signer") or {}).get("key_id")
    pem, name = _anchor(trust_anchor, signer_key)
    c2pa = read_c2pa(path, pem, name)
    if pem is None and c2pa.pointer and not signer_key:  # no sidecar: the C2PA pointer names the signer
        pem, name = _anchor(None, c2pa.pointer.get("signer_key_id"))
        if pem is not None:
            c2pa = read_c2pa(path, pem, name)
    if not c2pa.present:
        if claimed.get("embedded"):
            report.add("c2pa", FAILED, "the manifest says C2PA was embedded but the file has none: it was stripped")
        else:
            report.add("c2pa", SKIPPED, "no C2PA manifest" + (f" ({claimed['reason']})" if claimed.get("reason")
                                                              else ""))
        return
    mismatch = _pointer_mismatch(c2pa, record)
    if c2pa.state == "Invalid" or mismatch:
        report.add("c2pa", FAILED, "; ".join(filter(None, [describe(c2pa) if c2pa.state == "Invalid" else "",
                                                          mismatch])))
    elif c2pa.state == "Trusted":
        report.add("c2pa", OK, describe(c2pa))
    elif pem is not None:
        report.add("c2pa", FAILED, f"{describe(c2pa)}: the signer does not chain to {name}")
    else:
        report.add("c2pa", WARNING, describe(c2pa) + "; pass --trust-anchor CA.pem to check who signed")


def _pointer_mismatch(c2pa: C2paReport, record: dict[str, Any] | None) -> str:
    """Why the C2PA manifest does not belong with this sidecar ('' when it does, or when there is no sidecar)."""
    if record is None:
        return ""
    pointer = c2pa.pointer or {}
    if not pointer:
        return "the C2PA manifest has no genchain provenance assertion"
    generation = record.get("generation")
    if pointer.get("manifest") != str((record.get("artefact") or {}).get("file")) + mf.SUFFIX:
        return f"the C2PA manifest points to the sidecar {pointer.get('manifest')!r}, not this one"
    if pointer.get("generation_sha256") != mf.generation_sha256(generation):
        return "the C2PA manifest points to another generation record than this sidecar's"
    if pointer.get("signer_key_id") != (record.get("signer") or {}).get("key_id"):
        return "the C2PA manifest names another signer than this sidecar"
    claimed = record.get("c2pa") or {}
    if claimed.get("certificate_serial") and (c2pa.signer or {}).get("cert_serial_number") != \
            claimed["certificate_serial"]:
        return "the C2PA manifest was signed with another certificate than the sidecar records"
    return ""


def _check_watermark(report: VerifyReport, record: dict[str, Any] | None, path: Path, signer: Identity | None,
                     run_dir: str | Path | None) -> None:
    mark = (record or {}).get("watermark")
    if record is None:
        report.add("watermark", SKIPPED, "no manifest to say which watermark to look for")
        return
    if not isinstance(mark, dict):
        report.add("watermark", SKIPPED, "no watermark step was recorded for this file")
        return
    if not mark.get("applied"):
        report.add("watermark", SKIPPED, f"not applied: {mark.get('reason', 'no reason recorded')}")
        return
    if signer is None:
        report.add("watermark", SKIPPED, "not checked: needs the signer's key (the signing identity is not on this "
                                         f"machine, in {genchain_home() / 'keys'})")
        return
    kind = record["artefact"].get("kind")
    try:
        if kind == "image":
            status, detail = _detect_image(path, signer)
        elif kind == "text":
            status, detail = _detect_text(path, record, mark, signer, run_dir)
        else:
            status, detail = SKIPPED, f"no detector for {kind} watermarks ({mark.get('scheme')})"
    except (GenchainError, ValueError, OSError) as err:
        status, detail = FAILED, f"detection could not run: {err}"
    report.add("watermark", status, detail)


def _detect_image(path: Path, signer: Identity) -> tuple[str, str]:
    import numpy as np
    from PIL import Image

    from genchain.provenance.watermark_image import detect_image_watermark, image_watermark_key

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L") if image.mode in ("L", "1", "P", "LA", "I;16") else
                            image.convert("RGB"))
    found = detect_image_watermark(pixels, image_watermark_key(signer))
    detail = f"bit accuracy {found.bit_accuracy:.3f}, p-value {found.p_value:.2e}"
    return (OK, f"detected ({detail})") if found.detected else (FAILED, f"not detected ({detail})")


def _generated_text(path: Path) -> str:
    """The text to test: a .jsonl file's ``text`` fields (prompts left out), else the whole file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".jsonl":
        return text
    samples = [json.loads(line).get("text", "") for line in text.splitlines() if line.strip()]
    return "\n".join(samples)


def _detect_text(path: Path, record: dict[str, Any], mark: dict[str, Any], signer: Identity,
                 run_dir: str | Path | None) -> tuple[str, str]:
    from genchain.data.tokenize import load_tokenizer
    from genchain.provenance.watermark_text import TextWatermark, text_watermark_key

    run = run_dir or ((record.get("generation") or {}).get("run") or {}).get("path")
    if run is None or not (Path(run) / rundir.TOKENIZER).is_file():
        return SKIPPED, (f"not checked: the tokenizer of the run that made it is not at {run}; pass --run RUN_DIR")
    params = mark.get("params") or {}
    if params.get("tokenizer_sha256") and sha256_file(Path(run) / rundir.TOKENIZER) != params["tokenizer_sha256"]:
        return SKIPPED, f"not checked: {run} holds another tokenizer than the one that made the text; pass --run"
    tokenizer = load_tokenizer(Path(run) / rundir.TOKENIZER)
    found = TextWatermark.from_params(text_watermark_key(signer), params).detect_text(_generated_text(path), tokenizer)
    detail = (f"z = {found.z:.2f} (threshold {found.threshold}), {found.green}/{found.scored} green, "
              f"p-value {found.p_value:.2e}")
    if found.detected:
        return OK, f"detected: {detail}"
    # detection is statistical: an intact but short or low-entropy text can stay under the threshold
    return WARNING, f"not detected: {detail} (short or low-entropy texts may stay under the threshold)"
