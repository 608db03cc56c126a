"""Content Credentials: embed and validate a C2PA manifest (C2PA 2.1; CAWG training-and-mining 1.1) with c2pa-python.

What genchain writes into every file format c2pa can take (PNG, JPEG, GIF, WAV, MP4):

* ``c2pa.actions``: one ``c2pa.created`` action with digitalSourceType ``trainedAlgorithmicMedia`` (IPTC), the
  standard way to say "made by a generative model";
* ``cawg.training-mining``: the owner's choices for AI inference, generative training, training and data mining
  (allowed / notAllowed / constrained; ``notAllowed`` unless the owner chose otherwise with ``genchain keys new``);
* ``org.genchain.provenance``: a pointer to our signed sidecar manifest: its file name, the signer's Ed25519 key id
  and the SHA-256 of the manifest's ``generation`` block (what made the file). It cannot hold the hash of the whole
  sidecar: the sidecar holds the hash of the final file, which includes this C2PA manifest (a hash cycle).

The claim is signed offline by the identity's C2PA leaf certificate (see :mod:`genchain.provenance.certs`); any C2PA
validator (c2patool, the Content Credentials verify site, c2pa-python) reports it Trusted once the identity's
``ca.pem`` is added as a trust anchor, and Valid (signature and hashes check, signer unknown) otherwise.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import c2pa

from genchain import __version__
from genchain.errors import ProvenanceError
from genchain.fileio import atomic_path
from genchain.provenance.certs import C2paCredentials

# Formats c2pa-python embeds into (and that genchain writes); anything else gets the sidecar only.
C2PA_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                    ".wav": "audio/wav", ".mp4": "video/mp4"}
SIDECAR_ONLY_MEDIA_TYPES = {".txt": "text/plain", ".md": "text/markdown", ".jsonl": "application/jsonl",
                            ".json": "application/json", ".csv": "text/csv"}
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENCHAIN_ASSERTION = "org.genchain.provenance"
TRAINING_MINING_ASSERTION = "cawg.training-mining"
_SIGN_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}, "verify": {"verify_after_sign": False}}


def media_type(path: str | Path) -> str:
    """The IANA media type genchain records for ``path`` (by extension; ``application/octet-stream`` if unknown)."""
    suffix = Path(path).suffix.lower()
    return C2PA_MEDIA_TYPES.get(suffix) or SIDECAR_ONLY_MEDIA_TYPES.get(suffix) or "application/octet-stream"


def can_embed(path: str | Path) -> bool:
    return Path(path).suffix.lower() in C2PA_MEDIA_TYPES


def c2pa_manifest_definition(title: str, pointer: dict[str, Any],
                             training_mining: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The C2PA manifest definition (the JSON c2pa's Builder takes) for one generated file."""
    return {
        "claim_generator_info": [{"name": "genchain", "version": __version__}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions",
             "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                                   "softwareAgent": {"name": "genchain", "version": __version__}}]}},
            {"label": TRAINING_MINING_ASSERTION, "data": {"entries": training_mining}},
            {"label": GENCHAIN_ASSERTION, "data": pointer},
        ],
    }


def embed_c2pa(path: str | Path, credentials: C2paCredentials, pointer: dict[str, Any],
               training_mining: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Sign a C2PA manifest into ``path``, rewriting the file atomically.

    Args:
        path: A PNG, JPEG, GIF, WAV or MP4 file.
        credentials: The identity's C2PA leaf and root.
        pointer: The ``org.genchain.provenance`` assertion (sidecar name, signer key id, generation hash).
        training_mining: The CAWG entries (see ``certs.training_mining_entries``).

    Returns:
        The sidecar manifest's ``c2pa`` field: embedded, format, the assertions written, the leaf certificate.
    """
    path = Path(path)
    mime = C2PA_MEDIA_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ProvenanceError(f"C2PA cannot be embedded in {path.suffix or 'extension-less'} files ({path.name}); "
                              f"it takes {', '.join(sorted(C2PA_MEDIA_TYPES))}")
    definition = c2pa_manifest_definition(path.name, pointer, training_mining)
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ED25519, credentials.chain_pem, credentials.key_pem, None)
    try:
        signer = c2pa.Signer.from_info(info)
        context = c2pa.Context(settings=c2pa.Settings.from_dict(_SIGN_SETTINGS))
        with atomic_path(path) as tmp, open(path, "rb") as source, open(tmp, "w+b") as dest:
            with c2pa.Builder(definition, context) as builder:
                builder.sign(signer, mime, source, dest)
    except c2pa.C2paError as err:
        raise ProvenanceError(f"C2PA signing of {path.name} failed: {err}") from None
    return {"embedded": True, "format": mime,
            "assertions": ["c2pa.actions", TRAINING_MINING_ASSERTION, GENCHAIN_ASSERTION],
            "certificate_sha256": credentials.leaf_sha256, "certificate_serial": credentials.leaf_serial}


@dataclass
class C2paReport:
    """What a C2PA validator says about one file.

    ``state`` is c2pa's validation state: ``Trusted`` (valid and the signer chains to a trust anchor given),
    ``Valid`` (signature and content hashes check, signer not trusted), ``Invalid``; None when no manifest is
    present. ``failures`` are the c2pa validation codes of the active manifest (e.g. ``assertion.dataHash.mismatch``,
    ``signingCredential.untrusted``).
    """

    present: bool
    state: str | None = None
    failures: list[str] = field(default_factory=list)
    anchor: str | None = None
    error: str | None = None
    pointer: dict[str, Any] | None = None
    training_mining: dict[str, Any] | None = None
    digital_source_type: str | None = None
    signer: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_c2pa(path: str | Path, trust_anchors: bytes | None = None, anchor_name: str | None = None) -> C2paReport:
    """Validate the C2PA manifest of ``path``.

    Args:
        path: The file to read.
        trust_anchors: PEM root certificates to trust (for example an identity's ``ca.pem``); None trusts nothing,
            so the best state is ``Valid``.
        anchor_name: How to name the anchors in the report (a path, "local CA of identity NAME").
    """
    path = Path(path)
    mime = C2PA_MEDIA_TYPES.get(path.suffix.lower())
    if mime is None:
        return C2paReport(present=False, error=f"{path.suffix or 'this'} files cannot carry C2PA")
    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors.decode("ascii")}
    context = c2pa.Context(settings=c2pa.Settings.from_dict(settings))
    report = C2paReport(present=True, anchor=anchor_name if trust_anchors else None)
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(path.read_bytes()), None, context)
        if reader is None:
            return C2paReport(present=False)
        with reader:
            _fill(report, reader)
    except c2pa.C2paError as err:
        report.state, report.error = "Invalid", f"{type(err).__name__.lstrip('_')}: {err}"
    except KeyError as err:  # c2pa-python's way of saying the store names an active manifest it does not hold
        report.state, report.error = "Invalid", f"the manifest store is damaged ({err.args[0] if err.args else err})"
    return report


def _fill(report: C2paReport, reader: c2pa.Reader) -> None:
    report.state = reader.get_validation_state()
    results = reader.get_validation_results() or {}
    report.failures = [item["code"] for item in results.get("activeManifest", {}).get("failure", [])]
    manifest = reader.get_active_manifest() or {}
    report.signer = manifest.get("signature_info")
    for assertion in manifest.get("assertions", []):
        label, data = assertion.get("label", ""), assertion.get("data")
        if label == GENCHAIN_ASSERTION:
            report.pointer = data
        elif label == TRAINING_MINING_ASSERTION:
            report.training_mining = data.get("entries") if isinstance(data, dict) else None
        elif label.startswith("c2pa.actions"):
            for action in (data or {}).get("actions", []):
                if action.get("action") == "c2pa.created":
                    report.digital_source_type = action.get("digitalSourceType")


def describe(report: C2paReport) -> str:
    """One line for people: the state, the anchor used, and the failure codes."""
    if not report.present:
        return "no C2PA manifest" + (f" ({report.error})" if report.error else "")
    parts = [report.state or "?"]
    if report.state == "Trusted":
        parts.append(f"by {report.anchor}")
    elif report.anchor is None and report.state == "Valid":
        parts.append("(no trust anchor given, so not Trusted)")
    codes = [c for c in report.failures if not (report.anchor is None and c == "signingCredential.untrusted")]
    if codes:
        parts.append("codes: " + ", ".join(codes))
    if report.error:
        parts.append(report.error)
    return " ".join(parts)

