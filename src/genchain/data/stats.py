"""What a dataset holds: rows per split, lengths, image and audio properties, class balance, duplicates, leakage.

One streaming pass. What stays in memory is one small number per row (a length or a duration, for the
median and 95th percentile) and one 16-byte digest plus the id per row (for duplicates and leakage): about
150 bytes a row, so 10 million rows need ~1.5 GB.

Duplicates are exact duplicates of the *normalised* payload: texts under :func:`genchain.data.dedup.text_key`
(case, width forms, punctuation and spacing ignored), images by their pixels (so two PNG encodings of the same
picture match), audio by its samples. Leakage is what would make a held-out score lie: a validation/test row
whose payload or id also sits in train, and an augmented row whose parent is in another split.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from genchain.data.dataset import Dataset, open_dataset
from genchain.data.dedup import text_key
from genchain.data.media import decode_audio, image_array
from genchain.errors import InputError
from genchain.fileio import atomic_path

HISTOGRAM_BINS = 30
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "Droid Sans Fallback", "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC", "AR PL UMing CN")
_CJK_CHAR = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]"
_WORD = re.compile(rf"{_CJK_CHAR}|[^\W_]+")  # a Chinese/Japanese character counts as a word


def count_words(text: str) -> int:
    """Words of space-separated scripts plus characters of Chinese and Japanese, which have no spaces."""
    return len(_WORD.findall(text))


def compute_stats(dataset: str | Path) -> dict[str, Any]:
    """Everything :func:`format_stats` prints and :func:`plot_stats` draws, as a JSON-ready dict."""
    data = open_dataset(dataset)
    payload_stats = {"text": _TextStats, "image": _ImageStats, "audio": _AudioStats}[data.modality](data)
    class_columns = [name for name, f in data.features.items() if f["_type"] == "ClassLabel"]
    class_counts = {name: {split: Counter() for split in data.splits} for name in class_columns}
    split_of_id: dict[str, str] = {}
    ids_crossing: set[str] = set()
    duplicate_ids = 0
    first_split_of_key: dict[bytes, str] = {}
    exact_duplicates = 0
    in_train = {split: 0 for split in data.splits if split != "train"}
    augmented: list[tuple[str, str]] = []  # (split, parent_id)

    columns = ["id", "parent_id", data.payload, *class_columns]
    with tqdm(total=data.num_rows(), desc="stats", unit="row") as progress:
        for split, batch in data.batches(columns=columns):
            table = batch.to_pydict()
            for row_id, parent_id, payload in zip(table["id"], table["parent_id"], table[data.payload], strict=True):
                if row_id in split_of_id:
                    duplicate_ids += 1
                    if "train" in (split, split_of_id[row_id]) and split != split_of_id[row_id]:
                        ids_crossing.add(row_id)
                else:
                    split_of_id[row_id] = split
                if parent_id is not None:
                    augmented.append((split, parent_id))
                key = payload_stats.add(split, row_id, payload)
                if key is None:
                    continue
                if key in first_split_of_key:  # train is read first, so a copy of a train row finds "train" here
                    exact_duplicates += 1
                    if split != "train" and first_split_of_key[key] == "train":
                        in_train[split] += 1
                else:
                    first_split_of_key[key] = split
            for name in class_columns:
                class_counts[name][split].update(table[name])
            progress.update(batch.num_rows)

    parents_elsewhere = sum(1 for split, parent in augmented
                            if parent in split_of_id and split_of_id[parent] != split)
    return {
        "path": str(data.path),
        "modality": data.modality,
        "rows": {split: data.num_rows(split) for split in data.splits},
        "total_rows": data.num_rows(),
        data.modality: payload_stats.summary(),
        "classes": {name: _balance(class_counts[name], data.features[name]["names"]) for name in class_columns},
        "duplicates": {"exact_rows": exact_duplicates, "duplicate_ids": duplicate_ids},
        "leakage": {"held_out_rows_duplicating_train": in_train,
                    "ids_in_train_and_another_split": len(ids_crossing),
                    "augmented_rows": len(augmented),
                    "augmented_with_parent_in_another_split": parents_elsewhere},
        "steps": [{"op": s["op"], "rows_in": s.get("rows_in"), "rows_out": s.get("rows_out")}
                  for s in data.manifest.get("steps", [])],
    }


def _balance(per_split: dict[str, Counter], names: list[str]) -> dict[str, Any]:
    return {"names": names,
            "counts": {split: [counts.get(i, 0) for i in range(len(names))] for split, counts in per_split.items()},
            "unlabelled": {split: counts.get(None, 0) for split, counts in per_split.items()}}


def distribution(values: np.ndarray) -> dict[str, float]:
    """min / median / mean / 95th percentile / max, to 4 decimals (zeros for no values)."""
    if len(values) == 0:
        return {"min": 0, "median": 0, "mean": 0, "p95": 0, "max": 0}
    numbers = {"min": values.min(), "median": np.median(values), "mean": values.mean(),
               "p95": np.percentile(values, 95), "max": values.max()}
    return {name: round(float(x), 4) for name, x in numbers.items()}


def _histogram(values: np.ndarray) -> dict[str, list[float]]:
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS) if len(values) else (np.array([]), np.array([]))
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


class _TextStats:
    def __init__(self, data: Dataset):
        self.chars: list[int] = []
        self.words: list[int] = []

    def add(self, split: str, row_id: str, text: str) -> bytes:
        self.chars.append(len(text))
        self.words.append(count_words(text))
        return text_key(text)

    def summary(self) -> dict[str, Any]:
        chars = np.asarray(self.chars)
        return {"chars": distribution(chars), "words": distribution(np.asarray(self.words)),
                "histogram": {"of": "characters per text", **_histogram(chars)}}


class _ImageStats:
    """Sizes and modes, per-channel mean/std of pixel values in [0, 1] (per mode), mean-brightness histogram."""

    def __init__(self, data: Dataset):
        self.sizes: Counter = Counter()
        self.modes: Counter = Counter()
        self.sums: dict[str, np.ndarray] = {}  # mode -> (channels, 3): pixel count, sum, sum of squares
        self.brightness: list[float] = []
        self.undecodable = 0

    def add(self, split: str, row_id: str, image: dict[str, Any]) -> bytes | None:
        try:
            pixels = image_array(image["bytes"])
        except InputError as err:
            warnings.warn(f"row {row_id} ({split}): {err}", stacklevel=2)
            self.undecodable += 1
            return None
        mode = "L" if pixels.ndim == 2 else "RGB"
        self.sizes[f"{pixels.shape[1]}x{pixels.shape[0]}"] += 1
        self.modes[mode] += 1
        values = pixels.reshape(-1, 1 if pixels.ndim == 2 else pixels.shape[2]).astype(np.float64) / 255
        sums = self.sums.setdefault(mode, np.zeros((values.shape[1], 3)))
        sums += np.stack([np.full(values.shape[1], len(values)), values.sum(0), (values**2).sum(0)], axis=1)
        self.brightness.append(float(values.mean()))
        return hashlib.blake2b(str(pixels.shape).encode() + pixels.tobytes(), digest_size=16).digest()

    def summary(self) -> dict[str, Any]:
        channels = {}
        for mode, (n, total, squares) in ((m, s.T) for m, s in self.sums.items()):
            mean = total / n
            channels[mode] = {"mean": [round(float(x), 4) for x in mean],
                              "std": [round(float(x), 4) for x in np.sqrt(np.maximum(squares / n - mean**2, 0))]}
        return {"sizes": dict(self.sizes.most_common()), "modes": dict(self.modes.most_common()),
                "channels": channels, "undecodable": self.undecodable,
                "histogram": {"of": "mean brightness per image (0-1)", **_histogram(np.asarray(self.brightness))}}


class _AudioStats:
    def __init__(self, data: Dataset):
        self.sampling_rate = data.sampling_rate
        self.seconds: list[float] = []
        self.undecodable = 0

    def add(self, split: str, row_id: str, audio: dict[str, Any]) -> bytes | None:
        try:
            samples, rate = decode_audio(audio["bytes"])
        except InputError as err:
            warnings.warn(f"row {row_id} ({split}): {err}", stacklevel=2)
            self.undecodable += 1
            return None
        self.seconds.append(len(samples) / rate)
        return hashlib.blake2b(samples.tobytes(), digest_size=16).digest()

    def summary(self) -> dict[str, Any]:
        seconds = np.asarray(self.seconds)
        return {"sampling_rate": self.sampling_rate, "seconds": distribution(seconds),
                "total_hours": round(float(seconds.sum()) / 3600, 4), "undecodable": self.undecodable,
                "histogram": {"of": "seconds per clip", **_histogram(seconds)}}


# --------------------------------------------------------------------------------------------------- output
def format_stats(stats: dict[str, Any]) -> str:
    """The stats as a short report for a terminal."""
    lines = [f"{stats['path']}: {stats['modality']} dataset, {stats['total_rows']:,} rows ("
             + ", ".join(f"{n:,} {split}" for split, n in stats["rows"].items()) + ")"]
    payload = stats[stats["modality"]]
    if stats["modality"] == "text":
        lines.append("characters: " + _format_distribution(payload["chars"]))
        lines.append("words:      " + _format_distribution(payload["words"]) + "  (CJK: characters)")
    elif stats["modality"] == "image":
        lines.append("sizes: " + ", ".join(f"{size} x{n:,}" for size, n in payload["sizes"].items())
                     + "; modes: " + ", ".join(f"{mode} x{n:,}" for mode, n in payload["modes"].items()))
        for mode, channel in payload["channels"].items():
            lines.append(f"{mode} pixel mean {channel['mean']}, std {channel['std']}")
    else:
        lines.append(f"seconds: {_format_distribution(payload['seconds'])}; {payload['total_hours']} h in all "
                     f"at {payload['sampling_rate']} Hz")
    if payload.get("undecodable"):
        lines.append(f"undecodable: {payload['undecodable']}")
    for column, balance in stats["classes"].items():
        lines.append(f"{column} balance:")
        for split, counts in balance["counts"].items():
            parts = [f"{name} {n:,}" for name, n in zip(balance["names"], counts, strict=True)]
            if balance["unlabelled"][split]:
                parts.append(f"(none) {balance['unlabelled'][split]:,}")
            lines.append(f"  {split}: " + ", ".join(parts))
    duplicates, leakage = stats["duplicates"], stats["leakage"]
    lines.append(f"exact duplicate rows: {duplicates['exact_rows']:,}; repeated ids: {duplicates['duplicate_ids']:,}")
    held_out = ", ".join(f"{n:,} {split}" for split, n in leakage["held_out_rows_duplicating_train"].items())
    lines.append(f"leakage: held-out rows duplicating train: {held_out or 'no held-out split'}; "
                 f"ids in train and another split: {leakage['ids_in_train_and_another_split']:,}; "
                 f"augmented rows with the parent in another split: "
                 f"{leakage['augmented_with_parent_in_another_split']:,} of {leakage['augmented_rows']:,}")
    lines.append("steps: " + (" -> ".join(f"{s['op']} ({s['rows_in'] if s['rows_in'] is not None else '-'}"
                                          f" -> {s['rows_out']})" for s in stats["steps"]) or "none"))
    return "\n".join(lines)


def _format_distribution(d: dict[str, float]) -> str:
    return f"min {d['min']:g}, median {d['median']:g}, mean {d['mean']:g}, p95 {d['p95']:g}, max {d['max']:g}"


def plot_stats(stats: dict[str, Any], png_path: str | Path) -> None:
    """A PNG with three panels: the length/brightness/duration histogram, class balance, rows per split.

    Chinese class names (auto-topics of a Chinese corpus) need a CJK font: the first installed one of
    :data:`CJK_FONTS` is used as a fallback; without one they draw as boxes (and the text report has them).
    """
    import matplotlib
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    fonts = ["DejaVu Sans", *(name for name in CJK_FONTS if name in installed)]
    with matplotlib.rc_context({"font.family": fonts}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        _draw(stats, png_path)


def _draw(stats: dict[str, Any], png_path: str | Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.2), layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, without pyplot's global state
    histogram_axes, balance_axes, splits_axes = figure.subplots(1, 3)
    figure.suptitle(f"{stats['path']} ({stats['modality']}, {stats['total_rows']:,} rows)")

    histogram = stats[stats["modality"]]["histogram"]
    if histogram["counts"]:
        edges = np.asarray(histogram["edges"])
        histogram_axes.bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge")
    histogram_axes.set(title=histogram["of"], ylabel="rows")

    if stats["classes"]:
        column = "label" if "label" in stats["classes"] else next(iter(stats["classes"]))
        balance = stats["classes"][column]
        positions = np.arange(len(balance["names"]))
        width = 0.8 / max(len(balance["counts"]), 1)
        for i, (split, counts) in enumerate(balance["counts"].items()):
            balance_axes.bar(positions + i * width, counts, width=width, label=split)
        balance_axes.set_xticks(positions + 0.4 - width / 2, balance["names"], rotation=45, ha="right")
        balance_axes.legend()
        balance_axes.set(title=f"{column} balance", ylabel="rows")
    else:
        balance_axes.text(0.5, 0.5, "no labels", ha="center", va="center", transform=balance_axes.transAxes)
        balance_axes.set(title="label balance")

    splits_axes.bar(list(stats["rows"]), list(stats["rows"].values()))
    splits_axes.set(title="rows per split", ylabel="rows")

    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
