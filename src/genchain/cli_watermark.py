"""``genchain watermark detect``, and the watermark and safety steps of ``genchain generate text``.

The functions here parse nothing and decide little: they call :mod:`genchain.provenance.watermark_text`,
:mod:`genchain.provenance.watermark_image` and :mod:`genchain.provenance.safety`, and print what those found.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genchain.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SHORT_TEXT = 50  # fewer scored tokens than this: a watermark may well be there and still not reach the threshold


# ------------------------------------------------------------------------------------- watermark detect
def cmd_watermark_detect(args: argparse.Namespace) -> None:
    """Test files for your watermark: is this text or image ours, and with what confidence.

    Text (.txt and other text files: the whole file; .jsonl: each line's "text" field) is tokenized with the
    generating run's tokenizer, taken from --run, from the file's signed manifest (FILE.manifest.json) or
    from a .jsonl line's "run" field, and tested with the Kirchenbauer et al. z-test: z >= 4 means watermarked
    (text written without the key gets there with a chance of about 1e-4 at 50 tokens, less for longer texts;
    the p-value shown is the exact binomial one). Images (.png, .jpg, .webp) are tested for the image
    watermark. Only the holder of the key (--key, default "default") can detect: for anyone else every file
    reads as unmarked. The exit status is 0 whenever the test ran, whatever it found; use --json in scripts.

    examples:
      genchain watermark detect samples.jsonl
      genchain watermark detect story.txt --run runs/sh
      genchain watermark detect out/*.png --key studio --json
    """
    from genchain.provenance.keys import load_identity

    identity = load_identity(args.key)
    results: list[dict[str, Any]] = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise InputError(f"{path} does not exist")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            results.append(_detect_image(path, identity))
        else:
            results.extend(_detect_text_file(path, identity, args))
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for record in results:
        print(_describe(record))


def _detect_image(path: Path, identity: Any) -> dict[str, Any]:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from genchain.provenance.watermark_image import detect_image_watermark, image_watermark_key

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB", "RGBA") else image)
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path} is not a readable image ({err})") from None
    found = detect_image_watermark(pixels, image_watermark_key(identity))
    return {"file": str(path), "sample": None, "kind": "image", "detected": found.detected,
            "bit_accuracy": found.bit_accuracy, "p_value": found.p_value, "details": found.details}


def _detect_text_file(path: Path, identity: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from genchain.provenance.watermark_text import TextWatermark, text_watermark_key

    manifest = _sidecar(path)
    params = {}
    field = (manifest or {}).get("watermark") or {}
    if field.get("scheme") == "kgw-text-v1":
        params = dict(field.get("params") or {})
    if args.gamma is not None:
        params["gamma"] = args.gamma
    if args.threshold is not None:
        params["z_threshold"] = args.threshold
    try:
        watermark = TextWatermark.from_params(text_watermark_key(identity), params)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None
    results = []
    for line, text, run in _samples(path):
        run_dir = args.run or _manifest_run(manifest) or run
        if run_dir is None:
            raise InputError(f"{path}: cannot tell which tokenizer made this text; pass --run RUN_DIR (the run "
                             "that generated it)")
        found = watermark.detect_text(text, _tokenizer(run_dir, params.get("tokenizer_sha256")))
        results.append({"file": str(path), "sample": line, "kind": "text", "run": str(run_dir),
                        "manifest_says": _manifest_note(field), **found.to_dict()})
    return results


def _samples(path: Path) -> list[tuple[int | None, str, str | None]]:
    """(line number or None, text, run named in the line) for each sample in the file."""
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start}); detect text in the encoding it was "
                         "generated in") from None
    if path.suffix.lower() != ".jsonl":
        return [(None, content, None)]
    samples = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number}: not JSON ({err.msg}); a .jsonl file holds one object per line") \
                from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"{path}:{number}: no \"text\" field; each line needs the generated text in \"text\"")
        samples.append((number, record["text"], record.get("run")))
    if not samples:
        raise InputError(f"{path} holds no samples")
    return samples


def _sidecar(path: Path) -> dict[str, Any] | None:
    """The file's manifest, when it has one (read, not verified: `genchain verify` checks signatures)."""
    from genchain.provenance.manifest import read_manifest, sidecar_path

    sidecar = sidecar_path(path)
    return read_manifest(sidecar)[0] if sidecar.is_file() else None


def _manifest_run(manifest: dict[str, Any] | None) -> str | None:
    run = ((manifest or {}).get("generation") or {}).get("run") or {}
    return run.get("path")


def _manifest_note(field: dict[str, Any]) -> str | None:
    if not field:
        return None
    return "watermarked" if field.get("applied") else f"not watermarked ({field.get('reason', 'no reason given')})"


def _tokenizer(run_dir: str | Path, expected_sha256: str | None) -> Any:
    """The run's tokenizer; when the manifest names the one that made the text, it must be that one."""
    from genchain import rundir
    from genchain.data.tokenize import load_tokenizer
    from genchain.fileio import sha256_file

    path = Path(run_dir) / rundir.TOKENIZER
    if not path.is_file():
        raise InputError(f"{run_dir} has no {rundir.TOKENIZER}; pass --run with the text run that generated the file")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise InputError(f"{run_dir} holds another tokenizer than the one the manifest names for this text; pass "
                         "--run with the run that generated it")
    return load_tokenizer(path)


def _describe(record: dict[str, Any]) -> str:
    where = record["file"] + (f":{record['sample']}" if record.get("sample") else "")
    verdict = "watermarked " if record["detected"] else "not detected"
    if record["kind"] == "image":
        return f"{where}  {verdict}  bit accuracy {record['bit_accuracy']:.3f}  p = {record['p_value']:.2g}"
    line = (f"{where}  {verdict}  z = {record['z']:.2f}  p = {record['p_value']:.2g}  green {record['green']}/"
            f"{record['scored']} ({record['green_fraction']:.2f}, chance {record['gamma']:.2f})")
    if not record["detected"] and record["scored"] < SHORT_TEXT:
        line += f"  [only {record['scored']} tokens scored: too short to tell]"
    if record.get("manifest_says"):
        line += f"  [manifest: {record['manifest_says']}]"
    return line


# ------------------------------------------------------------------------------------- generate text steps
def text_watermark_for(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The watermark ``genchain generate text`` applies (or None) and the manifest's ``watermark`` field."""
    from genchain import rundir
    from genchain.fileio import sha256_file
    from genchain.provenance.watermark_text import SCHEME, TextWatermark, text_watermark_key

    if not args.watermark:
        return None, {"scheme": SCHEME, "applied": False, "params": {}, "reason": "turned off with --no-watermark"}
    if args.delta == 0:
        return None, {"scheme": SCHEME, "applied": False, "params": {}, "reason": "--delta 0 adds no bias"}
    from genchain.provenance.keys import ensure_identity

    identity, created = ensure_identity(args.key)
    if created:
        print(f"created signing identity {identity.name!r} in {identity.directory}", file=sys.stderr)
    try:
        watermark = TextWatermark(text_watermark_key(identity), gamma=args.gamma, delta=args.delta)
    except ValueError as err:
        raise InputError(f"watermark: {err}") from None
    tokenizer = Path(args.run) / rundir.TOKENIZER
    return watermark, watermark.manifest_field(sha256_file(tokenizer) if tokenizer.is_file() else None)


def safety_filter_for(args: argparse.Namespace) -> Any:
    """The safety filter ``genchain generate text`` applies, or None with --no-safety."""
    if not args.safety:
        return None
    from genchain.provenance.safety import Blocklist, SafetyFilter

    return SafetyFilter(Blocklist.load(args.blocklist))


def filter_outputs(safety: Any, texts: list[str]) -> list[str]:
    """Each generated text redacted, or withheld when it matches the blocklist; says so on stderr.

    Raises SafetyRefusal when every sample was withheld: there is nothing to print or sign.
    """
    from genchain.provenance.safety import SafetyRefusal

    kept, last = [], None
    for i, text in enumerate(texts):
        verdict = safety.check_output(text)
        if verdict.withheld:
            last = verdict.match
            print(f"sample {i + 1} withheld by the safety filter (category {verdict.category})", file=sys.stderr)
            continue
        if verdict.redacted:
            found = ", ".join(f"{n} {kind}" for kind, n in sorted(verdict.redacted.items()))
            print(f"sample {i + 1}: redacted personal data ({found})", file=sys.stderr)
        kept.append(verdict.text)
    if not kept and last is not None:
        raise SafetyRefusal("output", last)
    return kept


def add_generate_text_options(p: argparse.ArgumentParser) -> None:
    """The watermark and safety options of ``genchain generate text``."""
    p.add_argument("--no-watermark", dest="watermark", action="store_false",
                   help="do not watermark the text (default: on, keyed by --key's identity)")
    p.add_argument("--gamma", type=float, default=0.25, help="watermark: green share of the vocabulary (0.25)")
    p.add_argument("--delta", type=float, default=2.0, help="watermark: bias added to green logits (2.0)")
    p.add_argument("--no-safety", dest="safety", action="store_false",
                   help="turn off the safety filter (prompt refusal, output withholding, PII redaction)")
    p.add_argument("--blocklist", action="append", default=[], metavar="FILE",
                   help="more blocklist terms ([category] sections; '!replace' first drops the shipped lists)")


def add_watermark_commands(groups: argparse._SubParsersAction, command: Callable) -> None:
    """Register ``genchain watermark detect``."""
    watermark = groups.add_parser("watermark", help="detect watermarks").add_subparsers(dest="cmd", metavar="STEP",
                                                                                       required=True)
    p = command(watermark, "detect", cmd_watermark_detect, "is this text or image ours, with what confidence")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--run", metavar="RUN_DIR", help="the run whose tokenizer generated the text")
    p.add_argument("--key", default="default", metavar="NAME", help="the identity whose watermark to look for")
    p.add_argument("--gamma", type=float, help="text: green share the text was made with (default: the manifest's "
                                               "or 0.25)")
    p.add_argument("--threshold", type=float, help="text: z at or above which a text counts as watermarked (4)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
