"""The data chain through the real command line: a user's own folder and a built-in source, end to end."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from genchain.data.dataset import open_dataset


def genchain(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "genchain", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"genchain {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _user_text_folder(root: Path) -> Path:
    """A small folder of notes in two labelled sub-folders, with a duplicate, an e-mail and an empty file."""
    for label, lines in {"travel": ["We sailed along the coast to the old harbour at dawn.",
                                    "The train crossed the mountains and reached the lake by noon.",
                                    "Write to me at anna.berg@example.org when you land in Oslo."],
                         "kitchen": ["Knead the dough for ten minutes, then let it rest under a cloth.",
                                     "Roast the peppers until the skins blister and turn black.",
                                     "Knead the dough for ten minutes,   then let it rest under a cloth."]}.items():
        folder = root / label
        folder.mkdir(parents=True)
        for i, line in enumerate(lines):
            (folder / f"note{i}.txt").write_text(line + "\n", encoding="utf-8")
    (root / "kitchen" / "empty.txt").write_text("\n", encoding="utf-8")
    return root


def test_user_text_folder_through_every_command(tmp_path):
    raw = _user_text_folder(tmp_path / "notes")
    before = sorted((p.name, p.read_bytes()) for p in raw.rglob("*") if p.is_file())

    genchain("data", "ingest", str(raw), "--kind", "text", "--label-from", "dirname", "-o", str(tmp_path / "ds"))
    ds = open_dataset(tmp_path / "ds")
    assert ds.num_rows() == 6 and ds.label_names == ["kitchen", "travel"]

    out = genchain("data", "clean", str(tmp_path / "ds"), "-o", str(tmp_path / "clean"), "--dedup", "exact,near",
                   "--redact-pii")
    assert "wrote" in out.stdout
    cleaned = open_dataset(tmp_path / "clean")
    texts = cleaned.column("text")
    assert len(texts) == 5 and any("[EMAIL]" in t for t in texts) and not any("@example.org" in t for t in texts)
    assert [s["op"] for s in cleaned.manifest["steps"]] == ["ingest", "clean"]

    genchain("data", "annotate", str(tmp_path / "clean"), "--export", str(tmp_path / "labels.csv"))
    with open(tmp_path / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {r["label"] for r in rows} == {"kitchen", "travel"}
    rows[0]["label"] = "favourite"
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    genchain("data", "annotate", str(tmp_path / "clean"), "--import", str(tmp_path / "labels.csv"))
    relabelled = open_dataset(tmp_path / "clean")
    assert "favourite" in relabelled.label_names

    genchain("data", "augment", str(tmp_path / "clean"), "-o", str(tmp_path / "aug"), "--copies", "2")
    augmented = open_dataset(tmp_path / "aug")
    assert augmented.num_rows() == 15
    parents = [p for p in augmented.column("parent_id") if p is not None]
    assert len(parents) == 10 and set(parents) <= set(relabelled.column("id"))

    stats = json.loads(genchain("data", "stats", str(tmp_path / "aug"), "--plot", str(tmp_path / "s.png"),
                                "--json").stdout.rsplit("plot:", 1)[0])
    assert stats and Image.open(tmp_path / "s.png").size[0] > 100

    genchain("data", "prepare", "text", str(tmp_path / "clean"), "-o", str(tmp_path / "tokens"))
    assert (tmp_path / "tokens" / "train.bin").stat().st_size > 0
    assert datasets.load_from_disk(str(tmp_path / "aug"))["train"].num_rows == 15
    assert sorted((p.name, p.read_bytes()) for p in raw.rglob("*") if p.is_file()) == before


def test_builtin_digits_image_chain(tmp_path):
    genchain("data", "get", "digits", "-o", str(tmp_path / "raw"))
    genchain("data", "ingest", str(tmp_path / "raw"), "--kind", "image", "--label-from", "dirname",
             "-o", str(tmp_path / "ds"))
    ds = open_dataset(tmp_path / "ds")
    assert ds.num_rows() == 1797 and set(ds.splits) == {"train", "test"} and len(ds.label_names) == 10
    genchain("data", "clean", str(tmp_path / "ds"), "-o", str(tmp_path / "clean"), "--dedup", "exact")
    genchain("data", "augment", str(tmp_path / "clean"), "-o", str(tmp_path / "aug"), "--copies", "1")
    aug = open_dataset(tmp_path / "aug")
    train_rows = open_dataset(tmp_path / "clean").num_rows("train")
    assert aug.num_rows("train") == 2 * train_rows
    image = np.asarray(datasets.load_from_disk(str(tmp_path / "aug"))["train"][train_rows]["image"])
    assert image.shape == (8, 8)


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    result = genchain("data", "ingest", str(tmp_path / "missing"), "--kind", "text", "-o", str(tmp_path / "x"),
                      check=False)
    assert result.returncode == 2 and result.stderr.startswith("error:") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "x").exists()
    result = genchain("data", "get", "no-such-source", "-o", str(tmp_path / "y"), check=False)
    assert result.returncode == 2 and "fashion-mnist" in result.stderr
    result = genchain("data", "clean", str(tmp_path), "-o", str(tmp_path / "z"), check=False)
    assert result.returncode == 2 and "not a genchain dataset" in result.stderr


def test_sources_lists_every_builtin():
    out = genchain("data", "sources", "--json").stdout
    names = {s["name"] for s in json.loads(out)}
    assert {"fashion-mnist", "digits", "shakespeare", "fortunes", "fortunes-zh", "chinese-poetry",
            "bach-chorales", "speech-digits"} <= names


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_sources_report_espeak_present():
    statuses = {s["name"]: s for s in json.loads(genchain("data", "sources", "--json").stdout)}
    assert statuses["speech-digits"]["present"]
