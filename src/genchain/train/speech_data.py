"""Labelled word clips for the speech family: from a built-in source, a raw folder, or an audio dataset.

``--data`` is a comma-separated list, each item one of:

* ``speech-digits``: digits 0-9 synthesised by espeak-ng in many voices (:mod:`genchain.data.sources`), written
  once into ``$GENCHAIN_HOME/cache/sources/`` and reused;
* ``speech-real``: the ten real recordings ``digits/0.wav`` ... ``9.wav`` of asterisk-core-sounds (one speaker,
  8 kHz). Ten clips are too few to learn from alone, so each one also enters as ``real_copies`` speed-perturbed
  copies (0.85x-1.15x, resampled: pace and pitch move together, as in Ko et al. 2015's speed perturbation);
* a raw folder ``<label>/*.wav|flac|ogg`` (the layout ``genchain data get`` writes);
* a dataset from ``genchain data ingest --kind audio --label-from dirname``.

Held-out clips are chosen per label by *recording* (every copy of a recording lands on the same side), so a
speed-perturbed copy of a held-out clip never sits in training; only a label with too few recordings for that
(``speech-real`` alone) holds out copies, with a warning.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genchain.data.audio_features import FeatureConfig, clip_features, to_uint8
from genchain.data.media import decode_audio
from genchain.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
BUILTIN = ("speech-digits", "speech-real")


@dataclass
class Clip:
    """One labelled recording; ``group`` names the original recording its copies share."""

    samples: np.ndarray
    rate: int
    label: str
    id: str
    group: str


@dataclass
class SpeechData:
    """Feature tensors of both sides, uint8 (N, 1, n_mels, frames), and where they came from."""

    train: torch.Tensor
    train_labels: torch.Tensor
    eval: torch.Tensor
    eval_labels: torch.Tensor
    label_names: list[str]
    train_ids: list[str]
    eval_ids: list[str]
    sources: list[dict[str, Any]] = field(default_factory=list)


def sort_labels(names: set[str]) -> list[str]:
    """Numeric order when every name is a number (so label 7 is "7"), else alphabetical."""
    return sorted(names, key=int) if all(n.isdigit() for n in names) else sorted(names)


def source_dir(name: str, clips_per_digit: int) -> Path:
    """A built-in source's raw folder in the cache, written on first use (atomically, by get_source)."""
    from genchain.data.sources import get_source
    from genchain.provenance.keys import genchain_home

    suffix = f"-{clips_per_digit}" if name == "speech-digits" else ""
    target = genchain_home() / "cache" / "sources" / f"{name}{suffix}"
    if not (target / "SOURCE.json").is_file():
        options = {"clips_per_digit": clips_per_digit} if name == "speech-digits" else {}
        get_source(name, target, overwrite=target.exists(), **options)
    return target


def _read(path: Path, label: str, group: str) -> Clip:
    samples, rate = decode_audio(path.read_bytes(), str(path))
    return Clip(samples, rate, label, f"{group}", group)


def _raw_clips(root: Path, only: set[str] | None = None) -> list[Clip]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    clips = [_read(p, p.parent.name, f"{root.name}/{p.relative_to(root).as_posix()}") for p in files
             if only is None or p.parent.name in only]
    if not clips:
        raise InputError(f"{root} holds no audio files in <label>/ folders ({', '.join(AUDIO_SUFFIXES)}); "
                         "lay clips out as RAW_DIR/<label>/*.wav")
    return clips


def _real_digits(root: Path, copies: int) -> list[Clip]:
    """The ten real digit recordings, each with ``copies`` speed-perturbed versions (1.0x included when odd)."""
    from genchain.data.augment_audio import change_speed

    clips = []
    speeds = np.linspace(0.85, 1.15, copies) if copies > 1 else np.array([1.0])
    for digit in range(10):
        path = root / "digits" / f"{digit}.wav"
        if not path.is_file():
            raise InputError(f"{path} is missing; get the source again with `genchain data get speech-real`")
        base = _read(path, str(digit), f"speech-real/digits/{digit}.wav")
        for speed in speeds:
            clips.append(Clip(change_speed(base.samples, float(speed)), base.rate, base.label,
                              f"{base.group}@{speed:.2f}x", base.group))
    return clips


def _dataset_clips(path: Path) -> list[Clip]:
    from genchain.data.dataset import open_dataset

    dataset = open_dataset(path)
    if dataset.modality != "audio" or not dataset.label_names:
        raise InputError(f"{path} is a {dataset.modality} dataset{'' if dataset.label_names else ' without labels'}"
                         "; ingest labelled audio with `genchain data ingest RAW --kind audio --label-from dirname`")
    names = dataset.label_names
    clips = []
    for split, row in dataset.rows(columns=["id", "audio", "label"]):
        samples, rate = decode_audio(row["audio"]["bytes"], f"{path} row {row['id']}")
        group = f"{path.name}/{split}/{row['id']}"
        clips.append(Clip(samples, rate, names[row["label"]], group, group))
    return clips


def _source_info(directory: Path) -> dict[str, Any]:
    record = directory / "SOURCE.json"
    if record.is_file():
        info = json.loads(record.read_text(encoding="utf-8"))
        return {"path": str(directory), "name": info.get("name"), "origin": info.get("origin"),
                "licence": info.get("licence")}
    return {"path": str(directory), "licence": "unknown (user data)"}


def resolve_clips(spec: str, clips_per_digit: int, real_copies: int) -> tuple[list[Clip], list[dict[str, Any]]]:
    """Every clip the ``--data`` items name, and a provenance entry per item."""
    from genchain.data.dataset import is_dataset

    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise InputError("--data is empty; give speech-digits, speech-real, a RAW_DIR or a dataset dir")
    clips: list[Clip] = []
    sources = []
    for item in items:
        if item in BUILTIN:
            directory = source_dir(item, clips_per_digit)
            clips += _raw_clips(directory) if item == "speech-digits" else _real_digits(directory, real_copies)
            sources.append({**_source_info(directory), "item": item})
        elif is_dataset(item):
            clips += _dataset_clips(Path(item))
            manifest = json.loads((Path(item) / "manifest.json").read_text(encoding="utf-8"))
            licences = sorted({s.get("licence", "") for s in manifest.get("sources", [])} - {""})
            sources.append({"path": str(Path(item).resolve()), "item": item, "licence": "; ".join(licences)})
        elif Path(item).is_dir():
            clips += _raw_clips(Path(item))
            sources.append({**_source_info(Path(item).resolve()), "item": item})
        else:
            raise InputError(f"--data item {item!r} is neither a built-in source ({', '.join(BUILTIN)}), a folder "
                             "of <label>/*.wav, nor a dataset dir")
    return clips, sources


def build_features(spec: str, cfg: FeatureConfig, *, holdout: float, clips_per_digit: int,
                   real_copies: int) -> SpeechData:
    """Read the clips, analyse each once, and split them by recording into training and held-out sets."""
    clips, sources = resolve_clips(spec, clips_per_digit, real_copies)
    names = sort_labels({c.label for c in clips})
    if len(names) < 2:
        raise InputError(f"--data {spec} holds a single label ({names[0]}); a word model needs at least two")
    index = {name: i for i, name in enumerate(names)}
    groups: dict[str, list[str]] = defaultdict(list)  # label -> its recordings, sorted, then held out by stride
    for clip in clips:
        if clip.group not in groups[clip.label]:
            groups[clip.label].append(clip.group)
    stride = max(2, round(1 / holdout))
    held = _held_out(clips, groups, stride)
    sides: dict[bool, tuple[list[torch.Tensor], list[int], list[str]]] = {True: ([], [], []), False: ([], [], [])}
    for clip in tqdm(clips, desc="log-mel", unit="clip", leave=False, disable=None if len(clips) > 50 else True):
        try:
            features = clip_features(clip.samples, clip.rate, cfg)
        except InputError as err:
            raise InputError(f"{clip.id}: {err}") from err
        feats, labels, ids = sides[clip.id in held]
        feats.append(to_uint8(features)[None])
        labels.append(index[clip.label])
        ids.append(clip.id)
    if not sides[True][0]:
        raise InputError(f"--data {spec} has too few recordings per label to hold any out; add clips")

    def stack(side: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack(sides[side][0]), torch.tensor(sides[side][1], dtype=torch.long)

    (train, train_labels), (held_out, held_labels) = stack(False), stack(True)
    return SpeechData(train, train_labels, held_out, held_labels, names, sides[False][2], sides[True][2], sources)


def _held_out(clips: list[Clip], groups: dict[str, list[str]], stride: int) -> set[str]:
    """Ids of the held-out clips: every ``stride``-th recording of each label with all its copies; a label with
    fewer recordings than that (``speech-real`` alone: one per digit) holds out every ``stride``-th copy instead,
    with a warning, as nothing else can be held out."""
    held_groups = {g for label in groups for i, g in enumerate(sorted(groups[label])) if i % stride == stride - 1}
    few = sorted(label for label in groups if len(groups[label]) < stride)
    if few:
        warnings.warn(f"labels {', '.join(few)} have fewer than {stride} recordings: holding out copies of "
                      "training recordings for them, so their held-out figures are optimistic", stacklevel=3)
    held, seen = set(), defaultdict(int)
    for clip in sorted(clips, key=lambda c: c.id):
        if clip.label in few:
            seen[clip.label] += 1
            if seen[clip.label] % stride == 0:
                held.add(clip.id)
        elif clip.group in held_groups:
            held.add(clip.id)
    return held


def save_features(data: SpeechData, path: Path) -> None:
    """The analysed clips in the run dir, so evaluation and ``--resume`` need neither espeak nor the raw files."""
    from safetensors.torch import save_file

    from genchain.fileio import atomic_path

    tensors = {"train": data.train, "train_labels": data.train_labels, "eval": data.eval,
               "eval_labels": data.eval_labels}
    meta = {"label_names": json.dumps(data.label_names), "train_ids": json.dumps(data.train_ids),
            "eval_ids": json.dumps(data.eval_ids), "sources": json.dumps(data.sources)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_features(path: Path) -> SpeechData:
    from safetensors import safe_open

    if not path.is_file():
        raise InputError(f"{path} is missing; the run was not trained with `genchain train speech`")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    return SpeechData(t["train"], t["train_labels"], t["eval"], t["eval_labels"], json.loads(meta["label_names"]),
                      json.loads(meta["train_ids"]), json.loads(meta["eval_ids"]), json.loads(meta["sources"]))
