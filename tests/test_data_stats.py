"""`genchain data stats`: exact counts, lengths, balance, duplicates and leakage on small hand-built datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from genchain.cli import main
from genchain.data.dataset import DatasetWriter, base_features, make_step
from genchain.data.media import encode_png, encode_wav
from genchain.data.stats import compute_stats, count_words, format_stats, plot_stats


def _write(path, modality, rows, *, labels=None, sampling_rate=None):
    """rows: (split, dict) pairs; a manifest with one ingest step."""
    features = base_features(modality, labels=labels, sampling_rate=sampling_rate)
    with DatasetWriter(path, modality, features) as writer:
        for split, row in rows:
            writer.add(row, split=split)
        return writer.close({"sources": [], "steps": [make_step("ingest", {}, rows_in=None, rows_out=len(rows),
                                                                   started=0.0)]})


@pytest.fixture
def text_dataset(tmp_path):
    rows = [
        ("train", {"id": "a", "source": "s", "text": "Hello world", "label": 0}),
        ("train", {"id": "b", "source": "s", "text": "hello,   WORLD!", "label": 0}),  # same once normalised
        ("train", {"id": "c", "source": "s", "text": "床前明月光", "label": 1}),
        ("train", {"id": "d", "source": "s", "text": "one two three four", "label": None}),
        ("train", {"id": "c-aug", "source": "s", "parent_id": "c", "text": "明月光床前", "label": 1}),
        ("test", {"id": "e", "source": "s", "text": "One two three four.", "label": 1}),  # copy of d: leakage
        ("test", {"id": "a", "source": "s", "text": "a fresh line", "label": 0}),  # id a is in train too
        ("test", {"id": "t-aug", "source": "s", "parent_id": "b", "text": "hello there", "label": 0}),
    ]
    _write(tmp_path / "text", "text", rows, labels=["en", "zh"])
    return tmp_path / "text"


def test_count_words_is_cjk_aware():
    assert count_words("one two, three!") == 3
    assert count_words("床前明月光") == 5
    assert count_words("GPT-2 读 书") == 4


def test_text_stats_exact_numbers(text_dataset):
    stats = compute_stats(text_dataset)
    assert stats["rows"] == {"train": 5, "test": 3} and stats["total_rows"] == 8
    assert stats["text"]["chars"] == {"min": 5.0, "median": 11.5, "mean": 12.0, "p95": 18.65, "max": 19.0}
    assert stats["text"]["words"]["min"] == 2 and stats["text"]["words"]["max"] == 5
    assert sum(stats["text"]["histogram"]["counts"]) == 8
    assert stats["classes"]["label"] == {"names": ["en", "zh"], "counts": {"train": [2, 2], "test": [2, 1]},
                                         "unlabelled": {"train": 1, "test": 0}}
    assert stats["duplicates"] == {"exact_rows": 2, "duplicate_ids": 1}
    assert stats["leakage"] == {"held_out_rows_duplicating_train": {"test": 1}, "ids_in_train_and_another_split": 1,
                                "augmented_rows": 2, "augmented_with_parent_in_another_split": 1}
    assert stats["steps"] == [{"op": "ingest", "rows_in": None, "rows_out": 8}]
    json.dumps(stats)  # the CLI prints it as JSON
    text = format_stats(stats)
    assert "8 rows (5 train, 3 test)" in text and "exact duplicate rows: 2" in text and "(none) 1" in text


def test_plot_is_a_png(text_dataset, tmp_path):
    plot_stats(compute_stats(text_dataset), tmp_path / "out" / "stats.png")
    with Image.open(tmp_path / "out" / "stats.png") as image:
        image.load()
        assert image.format == "PNG" and image.size == (1500, 420)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["stats.png"]  # no temporary left behind


def test_image_stats_sizes_channels_and_pixel_duplicates(tmp_path):
    red = np.zeros((4, 6, 3), dtype=np.uint8)
    red[..., 0] = 255
    grey = np.full((5, 5, 3), 51, dtype=np.uint8)
    same_red = Image.fromarray(red)
    rows = [
        ("train", {"id": "0", "source": "r.png", "image": {"bytes": encode_png(red), "path": None}, "label": 0}),
        ("train", {"id": "1", "source": "g.png", "image": {"bytes": encode_png(grey), "path": None}, "label": 1}),
        # the same pixels in a differently compressed PNG: still a duplicate
        ("test", {"id": "2", "source": "r2.png", "image": {"bytes": _png(same_red, 9), "path": None}, "label": 0}),
        ("test", {"id": "3", "source": "bad.png", "image": {"bytes": b"\x89PNG broken", "path": None}, "label": 1}),
    ]
    _write(tmp_path / "img", "image", rows, labels=["red", "grey"])
    with pytest.warns(UserWarning, match="row 3 .test.: .* not a readable image"):
        stats = compute_stats(tmp_path / "img")
    image = stats["image"]
    assert image["sizes"] == {"6x4": 2, "5x5": 1} and image["modes"] == {"RGB": 3} and image["undecodable"] == 1
    # 24 + 24 red pixels (1, 0, 0) and 25 grey pixels (0.2, 0.2, 0.2)
    expected_mean = np.array([(48 + 25 * 0.2) / 73, 25 * 0.2 / 73, 25 * 0.2 / 73])
    assert image["channels"]["RGB"]["mean"] == pytest.approx(expected_mean, abs=1e-4)
    expected_std_r = np.sqrt((48 + 25 * 0.04) / 73 - expected_mean[0] ** 2)
    assert image["channels"]["RGB"]["std"][0] == pytest.approx(expected_std_r, abs=1e-4)
    assert stats["duplicates"]["exact_rows"] == 1
    assert stats["leakage"]["held_out_rows_duplicating_train"] == {"test": 1}
    assert "RGB pixel mean" in format_stats(stats)


def _png(image, level):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def test_audio_durations_and_cli(tmp_path, capsys):
    rate = 8000
    clips = [np.zeros(rate // 2), 0.1 * np.ones(rate), 0.1 * np.ones(rate), 0.2 * np.ones(2 * rate)]
    rows = [("train", {"id": str(i), "source": f"{i}.wav", "audio": {"bytes": encode_wav(c, rate), "path": None}})
            for i, c in enumerate(clips)]
    _write(tmp_path / "wav", "audio", rows, sampling_rate=rate)
    stats = compute_stats(tmp_path / "wav")
    assert stats["audio"]["seconds"] == {"min": 0.5, "median": 1.0, "mean": 1.125, "p95": 1.85, "max": 2.0}
    assert stats["audio"]["total_hours"] == round(4.5 / 3600, 4)
    assert stats["duplicates"]["exact_rows"] == 1 and stats["classes"] == {}

    assert main(["data", "stats", str(tmp_path / "wav"), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[:out.rindex("}") + 1])["total_rows"] == 4
    assert (tmp_path / "wav-stats.png").is_file()
