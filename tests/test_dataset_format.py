"""The dataset-directory format: our streaming writer's output opens in Hugging Face ``datasets`` as written."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from genchain.data.dataset import DatasetWriter, base_features, is_dataset, make_step, open_dataset
from genchain.data.media import decode_audio, encode_png, encode_wav, image_array
from genchain.errors import InputError


def _write_text(path, n=10, batch_rows=3, shard_bytes=2**20):
    features = base_features("text", labels=["neg", "pos"])
    with DatasetWriter(path, "text", features, batch_rows=batch_rows, shard_bytes=shard_bytes) as writer:
        for i in range(n):
            writer.add({"id": f"{i:08d}", "source": "t.txt", "text": f"row {i} ü", "label": i % 2},
                       split="train" if i < n - 3 else "test")
        return writer.close({"sources": [{"path": "t.txt", "licence": "CC0"}],
                             "steps": [make_step("ingest", {}, rows_in=None, rows_out=n, started=0.0)]})


def test_text_dataset_round_trip_and_hf_load(tmp_path):
    manifest = _write_text(tmp_path / "ds")
    assert manifest["splits"] == {"train": 7, "test": 3}
    ds = open_dataset(tmp_path / "ds")
    assert ds.modality == "text" and ds.label_names == ["neg", "pos"] and ds.num_rows() == 10
    assert ds.column("text", "test") == ["row 7 ü", "row 8 ü", "row 9 ü"]
    hf = datasets.load_from_disk(str(tmp_path / "ds"))
    assert hf["train"].num_rows == 7 and hf["train"].features["label"].names == ["neg", "pos"]
    assert hf["test"][0] == {"id": "00000007", "source": "t.txt", "parent_id": None, "text": "row 7 ü", "label": 1}


def test_small_shards_keep_order_and_hash_is_content_based(tmp_path):
    one = _write_text(tmp_path / "a", n=50, batch_rows=4, shard_bytes=64)
    two = _write_text(tmp_path / "b", n=50, batch_rows=4, shard_bytes=64)
    assert len(list((tmp_path / "a" / "train").glob("data-*.arrow"))) > 1
    assert one["content_sha256"] == two["content_sha256"]
    assert open_dataset(tmp_path / "a").column("id") == [f"{i:08d}" for i in range(50)]
    assert datasets.load_from_disk(str(tmp_path / "a"))["train"]["id"] == [f"{i:08d}" for i in range(47)]


def test_image_and_audio_payloads_decode_in_datasets(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    with DatasetWriter(tmp_path / "img", "image", base_features("image", labels=["a"])) as writer:
        writer.add({"id": "0", "source": "x.png", "image": {"bytes": encode_png(pixels), "path": None}, "label": 0})
        writer.close({})
    row = datasets.load_from_disk(str(tmp_path / "img"))["train"][0]
    assert np.array_equal(np.asarray(row["image"]), pixels)
    stored = next(open_dataset(tmp_path / "img").rows())[1]["image"]["bytes"]
    assert np.array_equal(image_array(stored), pixels)

    tone = (0.5 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    with DatasetWriter(tmp_path / "wav", "audio", base_features("audio", sampling_rate=8000)) as writer:
        writer.add({"id": "0", "source": "x.wav", "audio": {"bytes": encode_wav(tone, 8000), "path": None}})
        writer.close({})
    hf = datasets.load_from_disk(str(tmp_path / "wav"))["train"]
    assert hf.features["audio"].sampling_rate == 8000
    samples, rate = decode_audio(next(open_dataset(tmp_path / "wav").rows())[1]["audio"]["bytes"])
    assert rate == 8000 and np.abs(samples - tone).max() < 1e-4


def test_failure_inside_writer_leaves_existing_dataset_untouched(tmp_path):
    before = _write_text(tmp_path / "ds")
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "ds", "text", base_features("text"), overwrite=True) as writer:
            writer.add({"id": "x", "source": "s", "text": "new"})
            raise RuntimeError("crash mid-write")
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["content_sha256"] == before["content_sha256"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_refuses_existing_and_foreign_directories(tmp_path):
    _write_text(tmp_path / "ds")
    with pytest.raises(InputError, match="already exists"):
        DatasetWriter(tmp_path / "ds", "text", base_features("text"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(InputError, match="not a dataset"):
        DatasetWriter(tmp_path / "mine", "text", base_features("text"), overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_open_reports_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="no manifest.json"):
        open_dataset(tmp_path / "plain")
    (tmp_path / "plain" / "manifest.json").write_text('{"kind": "text-tokens"}')
    assert not is_dataset(tmp_path / "plain")
    with pytest.raises(InputError, match="text-tokens"):
        open_dataset(tmp_path / "plain")
    _write_text(tmp_path / "ds")
    with pytest.raises(InputError, match="no split 'validation'"):
        open_dataset(tmp_path / "ds").num_rows("validation")


def test_derived_manifest_carries_sources_and_steps(tmp_path):
    _write_text(tmp_path / "ds")
    parent = open_dataset(tmp_path / "ds")
    body = parent.derived_manifest(make_step("clean", {"x": 1}, rows_in=10, rows_out=9, started=0.0))
    assert body["sources"] == [{"path": "t.txt", "licence": "CC0"}]
    assert [s["op"] for s in body["steps"]] == ["ingest", "clean"]
    assert body["parent"]["content_sha256"] == parent.manifest["content_sha256"]
    assert body["steps"][-1]["versions"]["pyarrow"]
