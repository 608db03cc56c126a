"""``genchain data clean``: normalisation, every quality rule, the language filter, and whole runs over text,
image and audio datasets (counts, splits, dedup across splits, corrupt rows, the input left untouched)."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from genchain.data.clean import clean
from genchain.data.dataset import DatasetWriter, base_features, content_hash, make_step, open_dataset
from genchain.data.media import encode_png, encode_wav
from genchain.data.quality import LanguageFilter, QualityConfig, gopher, normalize_text, quality_reasons
from genchain.errors import InputError

EN_OK = "The harbour was quiet at dawn, and the fishing boats rocked gently against the old stone pier."
ZH_OK = "清晨的港口很安静，渔船在古老的石头码头边轻轻摇晃，海鸥在天空中盘旋。"


# --------------------------------------------------------------------------------------------- normalisation
def test_normalize_composes_strips_invisibles_and_tidies_whitespace():
    decomposed = "Cafe\u0301"
    assert len(decomposed) == 5 and normalize_text(decomposed) == "Caf\u00e9"
    assert normalize_text("a\x00b\x07c\u200bd\ufeffe\u00adf") == "abcdef"
    assert normalize_text("tab\tstays") == "tab\tstays"
    assert normalize_text("family \U0001F468\u200d\U0001F469") == "family \U0001F468\u200d\U0001F469"  # ZWJ kept
    assert normalize_text("  a   b \u3000 c  \r\nd\r\n\r\n\r\n\r\ne\u2028f  \n\n") == "a b c\nd\n\ne\nf"


# --------------------------------------------------------------------------------------------- quality rules
RULES = [
    # config, reason, texts that trip it (English and Chinese), texts that pass it
    (QualityConfig(min_chars=20), "min_chars", ["Too short.", "太短了。"], [EN_OK, ZH_OK]),
    (QualityConfig(max_chars=30), "max_chars", [EN_OK, ZH_OK], ["A short line.", "短句。"]),
    (QualityConfig(min_words=10), "min_words", ["Only four words here.", "四个汉字"], [EN_OK, ZH_OK]),
    (QualityConfig(max_words=10), "max_words", [EN_OK, ZH_OK], ["Only four words here.", "短句子。"]),
    (QualityConfig(max_symbol_ratio=0.1), "symbol_ratio",
     ["#sale #deal #cheap #now buy today", "Wait... what... no... really...", "等等……什么……不……"],
     [EN_OK, ZH_OK, "A single #tag in a longer sentence with many more words in it."]),
    (QualityConfig(max_digit_ratio=0.3), "digit_ratio", ["2023 1999 4521 8872 total 12", "编号 20231005 12345678"],
     [EN_OK, ZH_OK, "We met in 2019 and married in 2021."]),
    (QualityConfig(max_bullet_line_fraction=0.9), "bullet_lines", ["- one\n- two\n- three", "• 苹果\n• 香蕉"],
     [EN_OK, "Shopping list:\n- bread"]),
    (QualityConfig(max_ellipsis_line_fraction=0.3), "ellipsis_lines", ["Read more...\nClick here...\nThe end",
                                                                        "更多……\n点击……"],
     [EN_OK, "Line one.\nLine two.\nLine three...\nLine four."]),
    (QualityConfig(min_alpha_word_fraction=0.8), "alpha_words", ["12 34 56 78 90 apples", "--- *** ||| ok"],
     [EN_OK, ZH_OK]),
    (QualityConfig(max_duplicate_line_fraction=0.3), "duplicate_lines", ["Buy now\nBuy now\nBuy now\nGood deal",
                                                                          "买买买\n买买买\n买买买"],
     [EN_OK, "Line one\nLine two\nLine three"]),
    (QualityConfig(max_duplicate_line_char_fraction=0.2), "duplicate_line_chars",
     ["Subscribe to our newsletter\nSubscribe to our newsletter\nok", "订阅我们的新闻\n订阅我们的新闻"],
     [EN_OK, "Short\nShort\nA much longer line that carries most of the characters of this text."]),
    (QualityConfig(max_top_ngram_char_fraction=((2, 0.2),)), "top_ngram_2",
     ["click here click here click here for the deal", "点击这里点击这里点击这里"], [EN_OK, ZH_OK]),
    (QualityConfig(max_duplicate_ngram_char_fraction=((5, 0.15),)), "duplicate_ngram_5",
     ["the quick brown fox jumps and the quick brown fox jumps again", "春眠不觉晓处处闻啼鸟春眠不觉晓"],
     [EN_OK, ZH_OK]),
    (QualityConfig(word_length_range=(3.0, 10.0)), "word_length",
     ["a b c d e f g", "Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious"],
     [EN_OK, ZH_OK, "天地玄黄宇宙洪荒"]),  # one-character units of Chinese are exempt
]


@pytest.mark.parametrize(("config", "reason", "bad", "good"), RULES, ids=[r[1] for r in RULES])
def test_each_quality_rule_trips_and_passes(config, reason, bad, good):
    for text in bad:
        assert quality_reasons(text, config) == [reason], text
    for text in good:
        assert quality_reasons(text, config) == [], text


def test_defaults_remove_only_empty_and_presets():
    assert quality_reasons(" \n\t ", QualityConfig()) == ["empty"]
    assert quality_reasons("#### ...", QualityConfig()) == []  # every rule is off unless asked for
    g = gopher()
    assert (g.min_words, g.max_words, g.max_symbol_ratio, g.word_length_range) == (50, 100_000, 0.1, (3.0, 10.0))
    assert dict(g.max_top_ngram_char_fraction) == {2: 0.20, 3: 0.18, 4: 0.16}
    assert dict(g.max_duplicate_ngram_char_fraction)[10] == 0.10
    prose = " ".join([EN_OK, "Gulls circled over the nets while an old man mended a sail by the door of his shed.",
                      "Later the wind turned, clouds came in from the west, and everyone hurried home before rain."])
    assert quality_reasons(prose, g) == [] and quality_reasons(ZH_OK, g) == ["min_words"]
    flagged = QualityConfig().with_flags(max_repeat_ratio=0.25, min_chars=5)
    assert flagged.max_duplicate_line_fraction == flagged.max_duplicate_line_char_fraction == 0.25
    assert flagged.max_top_ngram_char_fraction == ((2, 0.25), (3, 0.25), (4, 0.25)) and flagged.min_chars == 5
    assert g.with_flags(min_chars=5).min_words == 50  # flags override fields, the rest stays


def test_language_filter_en_zh_other():
    english = LanguageFilter(("en",))
    assert english.keep("A fool and his money are soon parted.") == (True, "en")
    assert english.keep("Bonjour le monde, comment ça va aujourd'hui ?") == (False, "fr")
    assert english.keep("床前明月光，疑是地上霜。") == (False, "zh")
    assert english.keep("OK") == (True, "und")  # too short to judge: kept
    chinese = LanguageFilter(("zh",))
    for line in ["床前明月光", "你好世界", "在 Debian 这种规模的项目中，很难避免遇到意见不和的人。"]:
        assert chinese.keep(line) == (True, "zh"), line  # py3langid alone says yue or wuu for some of these
    assert chinese.keep("今日は良い天気ですね。散歩に行きましょう。") == (False, "ja")
    assert chinese.keep("Never put off till tomorrow what you can do today.") == (False, "en")
    with pytest.raises(InputError, match="unknown language"):
        LanguageFilter(("english",))


# --------------------------------------------------------------------------------------------- whole runs
def _text_dataset(path, train, test=()):
    with DatasetWriter(path, "text", base_features("text")) as writer:
        for i, text in enumerate(train):
            writer.add({"id": f"train-{i}", "source": "notes.txt", "text": text}, split="train")
        for i, text in enumerate(test):
            writer.add({"id": f"test-{i}", "source": "notes.txt", "text": text}, split="test")
        return writer.close({"sources": [{"path": "notes.txt", "licence": "CC0-1.0"}],
                             "steps": [make_step("ingest", {}, rows_in=None, rows_out=len(train) + len(test),
                                                 started=time.time())]})


def test_clean_text_end_to_end(tmp_path):
    train = [EN_OK,
             "the HARBOUR was quiet   at dawn and the fishing boats rocked gently against the old stone pier!",
             "Cafe\u0301 au lait is served every morning in the small kitchen.",
             "   ",
             "Hi.",
             "Write to anna.berg@example.org or call (415) 555-2671 for the keys.",
             ZH_OK]
    test = [EN_OK, "A completely different sentence about mountains and rivers in spring."]
    source = _text_dataset(tmp_path / "in", train, test)
    files_before = {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()}

    manifest = clean(tmp_path / "in", tmp_path / "out", min_chars=10, redact_pii=True)

    step = manifest["steps"][-1]
    assert step["op"] == "clean" and step["rows_in"] == 9 and step["rows_out"] == 5
    counts = step["counts"]
    assert counts["removed"] == {"exact_duplicate": 2, "empty": 1, "min_chars": 1}
    assert counts["changed"] == {"normalised": 3, "redacted": {"EMAIL": 1, "PHONE": 1}}
    assert counts["per_split"] == {"train": {"rows_in": 7, "rows_out": 4}, "test": {"rows_in": 2, "rows_out": 1}}
    assert [s["op"] for s in manifest["steps"]] == ["ingest", "clean"]
    assert manifest["parent"]["content_sha256"] == source["content_sha256"]
    assert manifest["sources"] == [{"path": "notes.txt", "licence": "CC0-1.0"}]

    out = open_dataset(tmp_path / "out")
    assert out.splits == ["train", "test"]
    assert out.column("text", "train") == [EN_OK, "Caf\u00e9 au lait is served every morning in the small kitchen.",
                                           "Write to [EMAIL] or call [PHONE] for the keys.", ZH_OK]
    assert out.column("id", "test") == ["test-1"]  # the test copy of a training row is gone: no leakage
    assert {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()} == files_before
    assert content_hash(tmp_path / "in", ["train", "test"]) == source["content_sha256"]


def test_clean_text_language_filter_and_repeat_rule(tmp_path):
    _text_dataset(tmp_path / "in", [EN_OK, ZH_OK, "Guten Morgen, wie geht es dir heute? Das Wetter ist schön.",
                                    "Buy now\nBuy now\nBuy now\nBuy now today"])
    manifest = clean(tmp_path / "in", tmp_path / "out", lang=("en", "zh"), max_repeat_ratio=0.3, dedup=())
    counts = manifest["steps"][-1]["counts"]
    assert counts["removed"] == {"lang:de": 1, "duplicate_lines": 1}
    assert open_dataset(tmp_path / "out").column("text") == [EN_OK, ZH_OK]


def test_near_dedup_text_and_a_split_emptied_by_dedup(tmp_path):
    base = ("Every spring the river floods the low meadows and the farmers move their sheep up to the high "
            "pastures until the water falls")
    edited = base.replace("sheep", "goats")
    other = "A completely different sentence about trains, tickets and the timetable of the night express to Rome."
    _text_dataset(tmp_path / "in", [base, other, edited], test=[base.upper()])
    with pytest.warns(UserWarning, match="split 'test' lost all its 1 rows"):
        manifest = clean(tmp_path / "in", tmp_path / "out", dedup=("exact", "near"))
    assert manifest["steps"][-1]["counts"]["removed"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert manifest["splits"] == {"train": 2, "test": 0}
    assert open_dataset(tmp_path / "out").column("text") == [base, other]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # the staging area is gone


def _png(pixels, **save):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def test_clean_images_corrupt_exact_and_near(tmp_path):
    # real photographs (they ship inside scikit-learn): pHash is meant for natural images
    scene = np.asarray(Image.fromarray(load_sample_image("china.jpg")).resize((128, 96), Image.Resampling.LANCZOS))
    other = np.asarray(Image.fromarray(load_sample_image("flower.jpg")).resize((128, 96), Image.Resampling.LANCZOS))
    jpeg = io.BytesIO()  # the near duplicate: resized, through a lossy JPEG, stored as PNG again
    Image.fromarray(scene).resize((64, 48), Image.Resampling.LANCZOS).save(jpeg, format="JPEG", quality=60)
    payloads = {"scene": encode_png(scene), "corrupt": encode_png(scene)[:60],
                "same-pixels": _png(scene, compress_level=9), "resized": _png(np.asarray(Image.open(jpeg))),
                "cropped": encode_png(scene[10:80, 20:110]), "other": encode_png(other)}
    assert payloads["same-pixels"] != payloads["scene"]
    with DatasetWriter(tmp_path / "in", "image", base_features("image")) as writer:
        for name, data in payloads.items():
            writer.add({"id": name, "source": "photos", "image": {"bytes": data, "path": None}})
        writer.close({})

    with pytest.warns(UserWarning, match=r"1 rows could not be decoded .*corrupt"):
        exact = clean(tmp_path / "in", tmp_path / "exact")
    assert exact["steps"][-1]["counts"]["removed"] == {"corrupt": 1, "exact_duplicate": 1}
    assert open_dataset(tmp_path / "exact").column("id") == ["scene", "resized", "cropped", "other"]

    with pytest.warns(UserWarning):
        near = clean(tmp_path / "in", tmp_path / "near", dedup=("exact", "near"))  # pHash distance <= 4
    assert near["steps"][-1]["counts"]["removed"] == {"corrupt": 1, "exact_duplicate": 1, "near_duplicate": 1}
    assert open_dataset(tmp_path / "near").column("id") == ["scene", "cropped", "other"]  # pHash misses crops


def test_clean_audio_durations_duplicates_and_corrupt(tmp_path):
    rate = 8000
    t = np.arange(rate * 3) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    clips = {"one-second": tone[:rate], "again": tone[:rate], "blip": tone[:800], "long": tone,
             "lower": (0.3 * np.sin(2 * np.pi * 220 * t[:rate])).astype(np.float32)}
    with DatasetWriter(tmp_path / "in", "audio", base_features("audio", sampling_rate=rate)) as writer:
        for name, samples in clips.items():
            writer.add({"id": name, "source": "mic", "audio": {"bytes": encode_wav(samples, rate), "path": None}})
        writer.add({"id": "broken", "source": "mic", "audio": {"bytes": b"RIFF\x00\x00not a wave", "path": None}})
        writer.close({})
    with pytest.warns(UserWarning, match="could not be decoded"):
        manifest = clean(tmp_path / "in", tmp_path / "out", min_seconds=0.5, max_seconds=2.0)
    assert manifest["steps"][-1]["counts"]["removed"] == {"exact_duplicate": 1, "too_short": 1, "too_long": 1,
                                                          "corrupt": 1}
    assert open_dataset(tmp_path / "out").column("id") == ["one-second", "lower"]


def test_everything_removed_is_an_error_and_writes_nothing(tmp_path):
    _text_dataset(tmp_path / "in", ["Short one.", "Another short one.", "Tiny."])
    with pytest.raises(InputError, match=r"all 3 rows were removed: 3 min_chars; loosen"):
        clean(tmp_path / "in", tmp_path / "out", min_chars=1000, dedup=("exact", "near"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_options_that_do_not_fit_are_refused(tmp_path):
    _text_dataset(tmp_path / "text", [EN_OK])
    with DatasetWriter(tmp_path / "img", "image", base_features("image")) as writer:
        image = {"bytes": encode_png(np.zeros((8, 8), np.uint8)), "path": None}
        writer.add({"id": "0", "source": "s", "image": image})
        writer.close({})
    with pytest.raises(InputError, match="unknown dedup method"):
        clean(tmp_path / "text", tmp_path / "o", dedup=("fuzzy",))
    with pytest.raises(InputError, match="min_chars apply to text datasets only"):
        clean(tmp_path / "img", tmp_path / "o", min_chars=5)
    with pytest.raises(InputError, match="min_seconds apply to audio"):
        clean(tmp_path / "text", tmp_path / "o", min_seconds=1.0)
    with pytest.raises(InputError, match="other than the input"):
        clean(tmp_path / "text", tmp_path / "text", overwrite=True)
    with pytest.raises(InputError, match="above --max-chars"):
        clean(tmp_path / "text", tmp_path / "o", min_chars=50, max_chars=10)
    assert not (tmp_path / "o").exists()
    assert json.loads((tmp_path / "text" / "manifest.json").read_text())["splits"] == {"train": 1}
