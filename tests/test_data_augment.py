"""genchain data augment: copies, lineage, determinism, split isolation, and each modality's operations."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from genchain.cli import main
from genchain.data.augment import augment
from genchain.data.augment_audio import add_noise, apply_gain, augment_audio, change_speed, time_shift
from genchain.data.augment_image import augment_images
from genchain.data.augment_recipe import OFF, PRESETS, load_recipe
from genchain.data.augment_text import augment_text, detokenize, random_delete, random_insert, random_swap, tokenize
from genchain.data.dataset import DatasetWriter, base_features, make_step, open_dataset
from genchain.data.media import decode_audio, encode_png, encode_wav, image_array
from genchain.errors import InputError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "augment"


def _write(path: Path, modality: str, splits: dict[str, list[dict]], **feature_kw) -> Path:
    with DatasetWriter(path, modality, base_features(modality, **feature_kw)) as writer:
        for split, rows in splits.items():
            for row in rows:
                writer.add({"source": "test", **row}, split)
        rows_out = sum(len(rows) for rows in splits.values())
        writer.close({"sources": [{"name": "test", "license": "CC0"}],
                      "steps": [make_step("ingest", {}, rows_in=None, rows_out=rows_out, started=0.0)]})
    return path


def _image(rng: np.random.Generator, mode: str, size: int = 16) -> dict:
    shape = (size, size) if mode == "L" else (size, size, 3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[: size // 2] //= 4  # darker top half: the image has structure that flips and crops move
    return {"bytes": encode_png(pixels), "path": None}


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory) -> Path:
    """Grey and colour 16x16 images (plus one 12x12) in train/test splits, and one corrupt PNG in train."""
    rng = np.random.default_rng(0)
    train = [{"id": f"t{i}", "image": _image(rng, "L" if i % 2 else "RGB"), "label": i % 2} for i in range(6)]
    train.append({"id": "small", "image": _image(rng, "L", 12), "label": 0})
    train.append({"id": "broken", "image": {"bytes": b"\x89PNG\r\n\x1a\n truncated", "path": None}, "label": 1})
    test = [{"id": f"v{i}", "image": _image(rng, "L"), "label": 1} for i in range(3)]
    return _write(tmp_path_factory.mktemp("img") / "ds", "image", {"train": train, "test": test},
                  labels=["a", "b"])


@pytest.fixture(scope="module")
def augmented(image_dataset, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("aug") / "out"
    with pytest.warns(UserWarning, match="broken"):
        manifest = augment(image_dataset, out, copies=2, recipe="strong", seed=1)
    return out, manifest


# --------------------------------------------------------------------------------------------------- images
def test_image_copies_lineage_and_content(image_dataset, augmented):
    out, manifest = augmented
    parent = {row["id"]: row for _, row in open_dataset(image_dataset).rows("train")}
    rows = {row["id"]: row for _, row in open_dataset(out).rows("train")}
    good = [i for i in parent if i != "broken"]
    assert manifest["splits"]["train"] == len(parent) + 2 * len(good)
    assert manifest["steps"][-1]["counts"] == {"copies_made": 2 * len(good), "undecodable": 1}
    assert manifest["steps"][-1]["params"]["recipe"]["image"] == load_recipe("strong")[1]["image"]
    for pid in parent:
        assert rows[pid] == parent[pid]  # originals unchanged, ids kept
    assert "broken-aug1" not in rows
    for pid in good:
        original = image_array(parent[pid]["image"]["bytes"])
        for k in (1, 2):
            copy = rows[f"{pid}-aug{k}"]
            assert copy["parent_id"] == pid and copy["label"] == parent[pid]["label"]
            assert copy["source"] == parent[pid]["source"]
            pixels = image_array(copy["image"]["bytes"])
            assert pixels.shape == original.shape and pixels.dtype == np.uint8
            assert not np.array_equal(pixels, original)
        assert rows[f"{pid}-aug1"]["image"] != rows[f"{pid}-aug2"]["image"]


def test_held_out_splits_are_not_augmented(image_dataset, augmented):
    out, manifest = augmented
    assert manifest["splits"]["test"] == 3
    assert list(open_dataset(out).rows("test")) == list(open_dataset(image_dataset).rows("test"))


@pytest.mark.filterwarnings("ignore:image of row 'broken'")
def test_same_seed_same_bytes_other_seed_differs(image_dataset, augmented, tmp_path):
    _, manifest = augmented
    again = augment(image_dataset, tmp_path / "again", copies=2, recipe="strong", seed=1)
    other = augment(image_dataset, tmp_path / "other", copies=2, recipe="strong", seed=2)
    assert again["content_sha256"] == manifest["content_sha256"]
    assert other["content_sha256"] != manifest["content_sha256"]


def test_hf_datasets_opens_the_output(augmented):
    datasets = pytest.importorskip("datasets")
    out, manifest = augmented
    loaded = datasets.load_from_disk(str(out))
    assert loaded["train"].num_rows == manifest["splits"]["train"]
    assert loaded["train"].features["label"].names == ["a", "b"]
    copy = loaded["train"][loaded["train"]["parent_id"].index("t0")]
    assert copy["image"].size == (16, 16) and copy["image"].mode == "RGB"


def test_flip_only_recipe_mirrors_exactly(image_dataset, tmp_path):
    """hflip: 1 with everything else off gives the mirror image, pixel for pixel (the warp is exact)."""
    out = tmp_path / "flip"
    with pytest.warns(UserWarning):
        augment(image_dataset, out, recipe={"image": {"hflip": 1.0}})
    rows = {row["id"]: row for _, row in open_dataset(out).rows("train")}
    for pid in ("t0", "t1", "small"):
        original = image_array(rows[pid]["image"]["bytes"])
        assert np.array_equal(image_array(rows[f"{pid}-aug1"]["image"]["bytes"]), original[:, ::-1])


def test_colour_operations_on_tensors():
    rng = np.random.default_rng(0)
    grey = [rng.integers(60, 180, (16, 16), dtype=np.uint8) for _ in range(4)]
    colour = [rng.integers(60, 180, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    rngs = [np.random.default_rng(i) for i in range(4)]
    cpu = torch.device("cpu")
    ratios = [out / image.astype(float) for image, out
              in zip(grey, augment_images(grey, rngs, {**OFF["image"], "brightness": 0.3}, cpu), strict=True)]
    assert all(r.std() < 0.01 for r in ratios)  # one multiplicative factor per image ...
    assert np.ptp([r.mean() for r in ratios]) > 0.05  # ... and a different one for each
    factors = []
    for image, out in zip(colour, augment_images(colour, rngs, {**OFF["image"], "contrast": 0.3}, cpu), strict=True):
        centred_in, centred_out = image - image.mean(), out - out.mean()
        factors.append((centred_out * centred_in).sum() / (centred_in**2).sum())
        assert np.abs(centred_out - factors[-1] * centred_in).max() < 3  # scaled about the mean
    assert np.ptp(factors) > 0.05
    colour_only = {**OFF["image"], "saturation": 0.5, "hue": 0.2}
    assert all(np.array_equal(a, b) for a, b in zip(grey, augment_images(grey, rngs, colour_only, cpu), strict=True))
    assert not any(np.array_equal(a, b)
                   for a, b in zip(colour, augment_images(colour, rngs, colour_only, cpu), strict=True))


# --------------------------------------------------------------------------------------------------- text
def test_text_dataset_copies(tmp_path):
    texts = ["the quick brown fox jumps over the lazy dog", "床前明月光，疑是地上霜。", "write to [EMAIL] today"]
    source = _write(tmp_path / "txt", "text", {"train": [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)],
                                               "validation": [{"id": "v", "text": "held out text here"}]})
    manifest = augment(source, tmp_path / "out", copies=3, recipe="strong", seed=0)
    rows = [row for _, row in open_dataset(tmp_path / "out").rows()]
    assert manifest["splits"] == {"train": 12, "validation": 1}
    assert [r["id"] for r in rows if r["parent_id"] == "r2"] == ["r2-aug1", "r2-aug2", "r2-aug3"]
    assert all(r["text"].strip() for r in rows)
    assert any(r["text"] != texts[0] for r in rows if r["parent_id"] == "r0")
    assert all(r["text"].count("EMAIL") == r["text"].count("[EMAIL]") for r in rows)  # never split


def test_tokenize_is_cjk_aware_and_keeps_placeholders():
    assert [t.text for t in tokenize("我爱 Python，联系[EMAIL]。")] == ["我", "爱", "Python", "，", "联", "系",
                                                                       "[EMAIL]", "。"]
    assert detokenize(tokenize("床前明月光，疑是地上霜。")) == "床前明月光，疑是地上霜。"
    assert detokenize(tokenize("mail [EMAIL] now")) == "mail [EMAIL] now"
    assert [t.text for t in tokenize("一\u3000二")] == ["一", "二"]  # the ideographic space is a space
    off = load_recipe({})[1]["text"]
    assert augment_text("  indented line\n\n两行", off, np.random.default_rng(0)) == "  indented line\n\n两行"


@pytest.mark.parametrize("line", ["the cat sat on the warm mat today", "床前明月光，疑是地上霜。"])
def test_swap_keeps_the_token_multiset_and_punctuation_in_place(line):
    tokens = tokenize(line)
    for seed in range(20):
        swapped = random_swap(tokens, 0.3, np.random.default_rng(seed))
        assert Counter(swapped) == Counter(tokens)
        assert [i for i, t in enumerate(swapped) if t.fixed] == [i for i, t in enumerate(tokens) if t.fixed]
    assert any(random_swap(tokens, 0.3, np.random.default_rng(s)) != tokens for s in range(20))


def test_delete_and_insert_never_empty():
    one = tokenize("hello")
    for seed in range(20):
        rng = np.random.default_rng(seed)
        assert [t.text for t in random_delete(one, 1.0, rng)] == ["hello"]
        deleted = random_delete(tokenize("字，"), 1.0, rng)
        assert [t.text for t in deleted] == ["字", "，"]
        inserted = random_insert(tokenize("a b c"), 0.5, rng)
        assert len(inserted) == 4 and set(t.text for t in inserted) == {"a", "b", "c"}
    strong = load_recipe("strong")[1]["text"]
    for seed in range(30):
        for text in ("x", "猫", "[EMAIL]", "a b", "第一行\n\n第二行"):
            out = augment_text(text, strong, np.random.default_rng(seed))
            assert out.strip() and out.count("\n") == text.count("\n")


# --------------------------------------------------------------------------------------------------- audio
def _tone(seconds: float = 0.5, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_audio_operations():
    tone = _tone()
    assert len(change_speed(tone, 1.25)) == len(tone) / 1.25
    assert len(change_speed(tone, 0.8)) == len(tone) / 0.8
    assert 20 * np.log10(_rms(apply_gain(tone, -6.0)) / _rms(tone)) == pytest.approx(-6.0, abs=1e-4)
    assert np.array_equal(time_shift(tone, 0.25), np.roll(tone, 1000))
    noisy = add_noise(tone, 20.0, np.random.default_rng(0))
    assert 20 * np.log10(_rms(tone) / _rms(noisy - tone)) == pytest.approx(20.0, abs=0.5)
    loud = augment_audio(tone * 3, {**OFF["audio"], "gain_db": [12.0, 12.0]}, np.random.default_rng(0))
    assert loud.max() <= 1.0 and loud.min() >= -1.0


def test_audio_dataset_copies(tmp_path):
    rows = [{"id": f"a{i}", "audio": {"bytes": encode_wav(_tone(0.2 + 0.1 * i), 8000), "path": None}}
            for i in range(3)]
    source = _write(tmp_path / "wav", "audio", {"train": rows}, sampling_rate=8000)
    recipe = {"base": "light", "audio": {"speed": [1.25, 1.25]}}
    manifest = augment(source, tmp_path / "out", copies=1, recipe=recipe)
    assert manifest["splits"] == {"train": 6}
    out = {row["id"]: row for _, row in open_dataset(tmp_path / "out").rows()}
    for row in rows:
        samples, rate = decode_audio(out[row["id"] + "-aug1"]["audio"]["bytes"])
        original, _ = decode_audio(row["audio"]["bytes"])
        assert rate == 8000 and len(samples) == len(original) / 1.25


# --------------------------------------------------------------------------------------------------- recipes
def test_shipped_recipe_files_match_the_presets():
    for name in PRESETS:
        assert load_recipe(CONFIGS / f"{name}.yaml")[1] == load_recipe(name)[1]
    for path in CONFIGS.glob("*.yaml"):
        load_recipe(path)
    digits = load_recipe(CONFIGS / "digits.yaml")[1]
    assert digits["image"]["hflip"] == 0 and digits["text"] == load_recipe("light")[1]["text"]


@pytest.mark.parametrize("recipe, message", [
    ({"image": {"flip": 0.5}}, "unknown image setting 'flip'; known: hflip, crop_scale"),
    ({"video": {}}, "unknown section 'video'"),
    ({"image": {"hflip": 2}}, "between 0 and 1"),
    ({"audio": {"speed": [1.2, 0.9]}}, r"\[low, high\] pair"),
    ({"base": "medium"}, "unknown base 'medium'"),
    ("medium", "unknown recipe 'medium'"),
])
def test_bad_recipes_are_input_errors(recipe, message):
    with pytest.raises(InputError, match=message):
        load_recipe(recipe)


def test_bad_recipe_file_and_arguments(image_dataset, augmented, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("text:\n  swop: 0.1\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown text setting 'swop'; known: swap, delete, insert"):
        augment(image_dataset, tmp_path / "x", recipe=bad)
    with pytest.raises(InputError, match="at least 1"):
        augment(image_dataset, tmp_path / "x", copies=0)
    with pytest.raises(InputError, match="already augmented"):
        augment(augmented[0], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert json.loads((augmented[0] / "manifest.json").read_text())["steps"][-1]["op"] == "augment"


def test_cli(tmp_path, capsys):
    source = _write(tmp_path / "txt", "text", {"train": [{"id": "a", "text": "one two three four"}]})
    assert main(["data", "augment", str(source), "-o", str(tmp_path / "out"), "--copies", "2", "--seed", "3"]) == 0
    assert "text dataset, 3 train" in capsys.readouterr().out  # 1 original + 2 copies
    assert main(["data", "augment", str(source), "-o", str(tmp_path / "x"), "--recipe", "heavy"]) == 2
    assert "unknown recipe 'heavy'; use light, strong or a .yaml file" in capsys.readouterr().err
