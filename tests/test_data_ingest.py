"""``genchain data ingest``: real text, image, IDX and audio files (some of them corrupt) into dataset directories."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image

from genchain.data.dataset import open_dataset
from genchain.data.ingest import ingest
from genchain.data.media import decode_audio, image_array
from genchain.data.tokens import TokenDataset, prepare_text
from genchain.errors import InputError

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _rows(path: Path, split: str | None = None) -> list[dict]:
    return [row for _, row in open_dataset(path).rows(split)]


def _image_bytes(size: tuple[int, int], colour, fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------- text
def test_text_from_every_format_with_sources_ids_and_licence(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha text\nsecond line\n")
    (src / "b.md").write_text("# beta\n")
    (src / "empty.txt").write_text("  \n")
    (src / "sub" / "c.jsonl").write_text('{"text": "gamma"}\n\n{"text": ""}\n{"text": "delta"}\n')
    (src / "d.csv").write_text('id,text\n1,epsilon\n2,"zeta, with\na newline"\n')
    pq.write_table(pa.table({"text": ["eta", None, "theta"]}), src / "e.parquet")
    (src / "ignored.json").write_text("{}")
    manifest = ingest([str(src)], tmp_path / "ds", kind="text")

    rows = _rows(tmp_path / "ds")
    assert [r["text"] for r in rows] == ["alpha text\nsecond line\n", "# beta\n", "epsilon", "zeta, with\na newline",
                                         "eta", "theta", "gamma", "delta"]
    assert [r["id"] for r in rows] == [f"{i:08d}" for i in range(8)]
    assert [r["source"] for r in rows][:4] == [f"{src}/a.txt", f"{src}/b.md", f"{src}/d.csv:2", f"{src}/d.csv:3"]
    assert rows[-1]["source"] == f"{src}/sub/c.jsonl:4" and rows[4]["source"] == f"{src}/e.parquet#1"
    assert "label" not in rows[0]
    assert manifest["modality"] == "text" and manifest["splits"] == {"train": 8}
    [source] = manifest["sources"]
    assert source["licence"] == "unknown (user data)" and source["files"] == 6 and len(source["sha256"]) == 64
    step = manifest["steps"][0]
    assert step["op"] == "ingest" and step["rows_out"] == 8 and step["params"]["kind"] == "text"
    assert step["counts"] == {"files": 6, "skipped_corrupt": 0, "skipped_empty": 2, "skipped_unlabelled": 0}


def test_glob_and_units(tmp_path, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("first line\nstill first paragraph\n\n\nsecond paragraph\n")
    (notes / "b.md").write_text("\r\nlone line\r\n")
    (notes / "skip.txt").write_text("not matched by the glob")
    monkeypatch.chdir(tmp_path)
    lines = ingest(["notes/*.md"], tmp_path / "lines", kind="text", unit="line")
    assert [r["text"] for r in _rows(tmp_path / "lines")] == ["first line", "still first paragraph",
                                                              "second paragraph", "lone line"]
    assert [r["source"] for r in _rows(tmp_path / "lines")][-1] == "notes/b.md:2"
    assert lines["sources"][0]["path"] == "notes/*.md" and lines["sources"][0]["files"] == 2
    ingest(["notes/*.md"], tmp_path / "paras", kind="text", unit="paragraph")
    rows = _rows(tmp_path / "paras")
    assert [r["text"] for r in rows] == ["first line\nstill first paragraph", "second paragraph", "lone line"]
    assert [r["source"] for r in rows] == ["notes/a.md:1", "notes/a.md:5", "notes/b.md:2"]
    with pytest.raises(InputError, match="matches no text files"):
        ingest(["notes/*.png"], tmp_path / "none", kind="text")


def test_invalid_utf8_in_a_streamed_file_names_the_offset(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n" + "caf\u00e9".encode("latin-1") + b"\n")
    with pytest.raises(InputError, match=r"bad.txt is not valid UTF-8: byte 0xe9 at offset 13"):
        ingest([str(bad)], tmp_path / "ds", kind="text", unit="line")
    assert list(tmp_path.iterdir()) == [bad]


def test_dirname_labels_splits_and_source_record(tmp_path):
    raw = tmp_path / "fortunes"
    for split, category, texts in [("train", "science", ["atoms", "stars"]), ("train", "art", ["paint"]),
                                   ("test", "art", ["sculpt"]), ("val", "science", ["cells"])]:
        (raw / split / category).mkdir(parents=True, exist_ok=True)
        (raw / split / category / "fortunes.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (raw / "train" / "loose.jsonl").write_text('{"text": "no class directory"}\n')
    (raw / "SOURCE.json").write_text(json.dumps({"name": "fortunes", "origin": "Debian fortunes-min",
                                                 "licence": "BSD-3-Clause", "files": 4}))
    with pytest.warns(UserWarning, match="1 rows had no label"):
        manifest = ingest([str(raw)], tmp_path / "ds", kind="text", label_from="dirname")
    assert manifest["splits"] == {"train": 3, "validation": 1, "test": 1}
    assert manifest["sources"][0] | {"sha256": None} == {
        "path": str(raw), "name": "fortunes", "origin": "Debian fortunes-min", "licence": "BSD-3-Clause",
        "files": 5, "sha256": None}
    assert manifest["steps"][0]["counts"]["skipped_unlabelled"] == 1
    hf = datasets.load_from_disk(str(tmp_path / "ds"))
    assert hf["train"].features["label"].names == ["art", "science"]
    train = sorted(zip(hf["train"]["text"], hf["train"]["label"], strict=True))
    assert train == [("atoms", 1), ("paint", 0), ("stars", 1)]
    assert list(hf["validation"]["text"]) == ["cells"] and list(hf["test"]["label"]) == [0]
    assert len(set(list(hf["train"]["id"]) + list(hf["validation"]["id"]) + list(hf["test"]["id"]))) == 5


def test_csv_labels_by_relative_path_or_name_and_missing_column(tmp_path):
    docs = tmp_path / "docs"
    (docs / "deep").mkdir(parents=True)
    for name, text in [("a.txt", "good film"), ("b.txt", "bad film"), ("deep/c.txt", "fine film"),
                       ("d.txt", "unlisted")]:
        (docs / name).write_text(text)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,notes\na.txt,pos,x\ndeep/c.txt,pos,\nelsewhere/b.txt,neg,by name\n")
    with pytest.warns(UserWarning, match="no label"):
        manifest = ingest([str(docs)], tmp_path / "ds", kind="text", label_from=f"csv:{labels}")
    rows = _rows(tmp_path / "ds")
    names = manifest["features"]["label"]["names"]
    assert names == ["neg", "pos"]
    assert [(r["text"], names[r["label"]]) for r in rows] == [("good film", "pos"), ("bad film", "neg"),
                                                              ("fine film", "pos")]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,class\na.txt,pos\n")
    with pytest.raises(InputError, match="needs a 'file'.*it has name, class"):
        ingest([str(docs)], tmp_path / "ds2", kind="text", label_from=f"csv:{wrong}")
    with pytest.raises(InputError, match="not understood"):
        ingest([str(docs)], tmp_path / "ds2", kind="text", label_from="folder")
    assert not (tmp_path / "ds2").exists()


def test_empty_result_missing_sources_and_existing_output(tmp_path):
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(InputError, match="nothing was ingested.*1 skipped empty"):
        ingest([str(tmp_path / "blank.txt")], tmp_path / "ds", kind="text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.txt"]
    with pytest.raises(InputError, match="does not exist"):
        ingest([str(tmp_path / "nope.txt")], tmp_path / "ds", kind="text")
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="holds no image files"):
        ingest([str(tmp_path / "pics")], tmp_path / "ds", kind="image")
    (tmp_path / "ok.txt").write_text("some text")
    first = ingest([str(tmp_path / "ok.txt")], tmp_path / "ds", kind="text")
    with pytest.raises(InputError, match="already exists"):
        ingest([str(tmp_path / "ok.txt")], tmp_path / "ds", kind="text")
    (tmp_path / "ok.txt").write_text("other text")
    second = ingest([str(tmp_path / "ok.txt")], tmp_path / "ds", kind="text", overwrite=True)
    assert first["content_sha256"] != second["content_sha256"]
    assert first["sources"][0]["sha256"] != second["sources"][0]["sha256"]
    assert [r["text"] for r in _rows(tmp_path / "ds")] == ["other text"]


def test_prepare_text_reads_an_ingested_dataset(tmp_path):
    lines = [json.dumps({"text": f"line {i} of the corpus"}) + "\n" for i in range(40)]
    (tmp_path / "a.jsonl").write_text("".join(lines))
    ingest([str(tmp_path / "a.jsonl")], tmp_path / "ds", kind="text")
    manifest = prepare_text([str(tmp_path / "ds")], tmp_path / "tokens", val_fraction=0.1)
    assert manifest["documents"] == 40
    assert manifest["sources"][0]["sources"][0]["licence"] == "unknown (user data)"
    tokens = TokenDataset.open(tmp_path / "tokens")
    assert tokens.tokenizer.decode(tokens.train[:20].tolist()) == "line 0 of the corpus"


def test_prepare_text_refuses_an_image_dataset(tmp_path):
    (tmp_path / "a.png").write_bytes(_image_bytes((4, 4), (1, 2, 3), "PNG"))
    ingest([str(tmp_path / "a.png")], tmp_path / "ds", kind="image")
    with pytest.raises(InputError, match="is an image dataset"):
        prepare_text([str(tmp_path / "ds")], tmp_path / "tokens")


# --------------------------------------------------------------------------------------------------- images
def _photo_tree(root: Path) -> None:
    """train/{cat,dog} and test/cat in PNG, JPEG and WebP of different sizes, plus two corrupt files."""
    for split, label, name, size, colour, fmt in [
        ("train", "cat", "a.png", (20, 10), (200, 0, 0), "PNG"),
        ("train", "cat", "b.jpg", (12, 12), (0, 200, 0), "JPEG"),
        ("train", "dog", "c.webp", (8, 16), (0, 0, 200), "WEBP"),
        ("train", "dog", "d.bmp", (10, 10), (50, 50, 50), "BMP"),
        ("test", "cat", "e.gif", (6, 6), (255, 255, 0), "GIF"),
    ]:
        (root / split / label).mkdir(parents=True, exist_ok=True)
        (root / split / label / name).write_bytes(_image_bytes(size, colour, fmt))
    whole = _image_bytes((32, 32), (9, 9, 9), "PNG")
    (root / "train" / "dog" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "test" / "cat" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")


def test_image_tree_with_splits_labels_and_corrupt_files(tmp_path):
    _photo_tree(tmp_path / "photos")
    with pytest.warns(UserWarning, match="not a readable image"):
        manifest = ingest([str(tmp_path / "photos")], tmp_path / "ds", kind="image", label_from="dirname",
                          image_size=8)
    step = manifest["steps"][0]
    assert step["counts"]["skipped_corrupt"] == 2 and step["counts"]["files"] == 7
    assert step["params"].items() >= {"image_mode": "RGB", "width": 8, "height": 8, "sizes": 1}.items()
    assert manifest["splits"] == {"train": 4, "test": 1}
    hf = datasets.load_from_disk(str(tmp_path / "ds"))
    assert hf["train"].features["label"].names == ["cat", "dog"]
    assert list(hf["train"]["label"]) == [0, 0, 1, 1]
    first = hf["train"][0]["image"]
    assert first.size == (8, 8) and first.mode == "RGB"
    assert tuple(np.asarray(first)[4, 4]) == (200, 0, 0)
    assert np.asarray(hf["test"][0]["image"])[0, 0].tolist() == [255, 255, 0]


def test_image_mode_and_sizes_normalised(tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "a.png").write_bytes(_image_bytes((5, 7), 77, "PNG", mode="L"))
    (pics / "b.png").write_bytes(_image_bytes((9, 3), (255, 0, 0), "PNG"))
    (pics / "c.png").write_bytes(_image_bytes((4, 4), (0, 0, 0, 0), "PNG", mode="RGBA"))
    grey = ingest([str(pics)], tmp_path / "grey", kind="image")
    assert grey["steps"][0]["params"].items() >= {"image_mode": "L", "width": None, "height": None, "sizes": 3}.items()
    images = [image_array(r["image"]["bytes"]) for r in _rows(tmp_path / "grey")]
    assert [im.shape for im in images] == [(7, 5), (3, 9), (4, 4)]
    assert images[0][0, 0] == 77 and images[2][0, 0] == 255  # transparency composited on white
    ingest([str(pics)], tmp_path / "rgb", kind="image", image_mode="RGB", image_size=6)
    images = [image_array(r["image"]["bytes"]) for r in _rows(tmp_path / "rgb")]
    assert all(im.shape == (6, 6, 3) for im in images)
    assert images[0][0, 0].tolist() == [77, 77, 77] and images[1][3, 3].tolist() == [255, 0, 0]


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_pairs_with_classes_file(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    train_images, test_images = rng.integers(0, 256, (5, 4, 3)), rng.integers(0, 256, (2, 4, 3))
    _write_idx(raw / "train-images-idx3-ubyte.gz", train_images)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", np.array([2, 0, 1, 2, 2]))
    _write_idx(raw / "t10k-images-idx3-ubyte", test_images)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.array([1, 0]))
    (raw / "classes.txt").write_text("shirt\nshoe\nbag\n")
    manifest = ingest([str(raw)], tmp_path / "ds", kind="image")
    assert manifest["splits"] == {"train": 5, "test": 2}
    assert manifest["steps"][0]["params"].items() >= {"image_mode": "L", "width": 3, "height": 4}.items()
    hf = datasets.load_from_disk(str(tmp_path / "ds"))
    assert hf["train"].features["label"].names == ["shirt", "shoe", "bag"]
    assert list(hf["train"]["label"]) == [2, 0, 1, 2, 2] and list(hf["test"]["label"]) == [1, 0]
    assert np.array_equal(np.asarray(hf["train"][3]["image"]), train_images[3])
    assert np.array_equal(np.asarray(hf["test"][1]["image"]), test_images[1])
    assert hf["test"][0]["source"] == f"{raw}/t10k-images-idx3-ubyte#0"
    assert hf["test"][0]["id"] == "00000000"  # t10k sorts before train: ids follow reading order

    with pytest.raises(InputError, match="drop --label-from"):
        ingest([str(raw)], tmp_path / "ds2", kind="image", label_from="dirname")
    data = (raw / "t10k-images-idx3-ubyte").read_bytes()
    (raw / "t10k-images-idx3-ubyte").write_bytes(data[:-5])
    with pytest.raises(InputError, match="truncated"):
        ingest([str(raw)], tmp_path / "ds2", kind="image")
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + data[4:])
    with pytest.raises(InputError, match="not an IDX file of unsigned bytes"):
        ingest([str(raw)], tmp_path / "ds2", kind="image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "raw"]


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    manifest = ingest([str(FASHION_MNIST)], tmp_path / "fm", kind="image")
    assert manifest["splits"] == {"train": 60000, "test": 10000}
    hf = datasets.load_from_disk(str(tmp_path / "fm"))
    assert hf["train"].features["label"].num_classes == 10
    assert hf["test"][0]["image"].size == (28, 28)
    assert np.bincount(list(hf["test"]["label"])).tolist() == [1000] * 10


# --------------------------------------------------------------------------------------------------- audio
def test_audio_resampled_to_mono_with_labels_and_a_corrupt_file(tmp_path):
    raw = tmp_path / "speech"
    for digit in ("3", "7"):
        (raw / digit).mkdir(parents=True)
    t = np.arange(44100 // 2) / 44100
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 440 * t)
    sf.write(raw / "3" / "a.wav", np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    sf.write(raw / "7" / "b.flac", 0.2 * np.sin(2 * np.pi * 220 * np.arange(8000) / 8000), 8000)
    (raw / "7" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense")
    with pytest.warns(UserWarning, match="broken.wav is not readable audio"):
        manifest = ingest([str(raw)], tmp_path / "ds", kind="audio", label_from="dirname")
    step = manifest["steps"][0]
    assert step["counts"]["skipped_corrupt"] == 1 and step["params"]["seconds"] == pytest.approx(1.5, abs=1e-3)
    hf = datasets.load_from_disk(str(tmp_path / "ds"))["train"]
    assert hf.features["audio"].sampling_rate == 16000 and hf.features["label"].names == ["3", "7"]
    assert list(hf["label"]) == [0, 1]
    rows = _rows(tmp_path / "ds")
    samples, rate = decode_audio(rows[0]["audio"]["bytes"])
    assert rate == 16000 and len(samples) == 8000
    expected = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)  # the two channels averaged
    assert np.abs(samples[100:-100] - expected[100:-100]).max() < 2e-3
    with sf.SoundFile(io.BytesIO(rows[1]["audio"]["bytes"])) as stored:
        assert (stored.channels, stored.samplerate, stored.subtype) == (1, 16000, "PCM_16")


def test_cli_ingests_and_reports(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"body": "from the cli"}\n{"body": ""}\n')
    result = subprocess.run([sys.executable, "-m", "genchain", "data", "ingest", str(tmp_path / "t.jsonl"),
                             "--kind", "text", "--text-field", "body", "-o", str(tmp_path / "ds")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "text dataset, 1 train" in result.stdout and '"skipped_empty": 1' in result.stdout
    again = subprocess.run([sys.executable, "-m", "genchain", "data", "ingest", str(tmp_path / "t.jsonl"),
                            "--kind", "text", "-o", str(tmp_path / "ds")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr
