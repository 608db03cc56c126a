"""Sentence embeddings, auto-topics and the label CSV round trip of `genchain data annotate`."""

from __future__ import annotations

import csv
import itertools
import json
import random

import datasets
import numpy as np
import pytest

from genchain.cli import main
from genchain.data.annotate import annotate, ctfidf_top_terms, terms
from genchain.data.dataset import DatasetWriter, base_features, make_step, open_dataset
from genchain.data.embed import SentenceEmbedder, bundled_model_dir, default_embedder
from genchain.data.media import encode_png
from genchain.errors import InputError

THEMES = {
    "cooking": (["The chef", "My grandmother", "The cook", "A baker", "Our kitchen team"],
                ["simmers", "bakes", "seasons", "roasts"],
                ["the garlic soup with fresh basil", "a loaf of sourdough bread in the oven",
                 "the tomato sauce with olive oil", "the chicken with rosemary and butter", "a pan of onions"]),
    "football": (["The striker", "The goalkeeper", "The midfielder", "Our football club", "The referee"],
                 ["scores against", "defends against", "celebrates beating", "tackles"],
                 ["the rival team in the stadium", "the league champions after a penalty",
                  "the opponents in the second half", "the defenders near the goal", "the visiting football side"]),
    "astronomy": (["The telescope", "The astronomer", "A space probe", "The observatory", "Our astronomy club"],
                  ["observes", "photographs", "detects", "maps"],
                  ["a distant galaxy of stars", "the rings of Saturn at night", "a comet near the sun",
                   "the craters of the moon", "a supernova in the nebula"]),
}


def _theme_sentences(theme: str, n: int = 20) -> list[str]:
    combos = list(itertools.product(*THEMES[theme]))
    return [f"{s} {v} {o}." for s, v, o in random.Random(0).sample(combos, n)]


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    return default_embedder()  # the instance auto-topics uses too: the model loads once per test session


def _write_text(path, texts, labels=None, names=None, splits=None, parent=None):
    features = base_features("text", labels=names)
    with DatasetWriter(path, "text", features, overwrite=True) as writer:
        for i, text in enumerate(texts):
            row = {"id": f"r{i:03d}", "source": "test", "text": text}
            if names is not None:
                row["label"] = labels[i]
            writer.add(row, split=splits[i] if splits else "train")
        return writer.close({"sources": [{"path": "test", "licence": "CC0"}], **({"parent": parent} if parent else {}),
                             "steps": [make_step("ingest", {}, rows_in=None, rows_out=len(texts), started=0.0)]})


# --------------------------------------------------------------------------------------------------- embeddings
def test_embeddings_match_sentence_transformers(embedder):
    from sentence_transformers import SentenceTransformer

    texts = ["A man is eating food.", "床前明月光，疑是地上霜。", "x", "The quick brown fox " * 80]  # > 256 tokens
    ours = embedder.embed(texts, batch_size=3)
    theirs = SentenceTransformer(str(bundled_model_dir()), device="cpu").encode(texts, batch_size=3)
    assert ours.shape == (4, 384) and ours.dtype == np.float32 and embedder.max_tokens == 256
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() > 1 - 1e-4
    exact = SentenceEmbedder(precision="fp32").embed(texts, batch_size=2)
    assert np.abs(exact - theirs).max() < 1e-5


def test_similar_sentences_are_closer(embedder):
    a, b, c = embedder.embed(["The cat sleeps on the sofa.", "A kitten is napping on the couch.",
                              "Interest rates rose by half a percent."])
    assert a @ b > a @ c + 0.3 and a @ b > b @ c + 0.3
    assert embedder.embed([]).shape == (0, 384)


# --------------------------------------------------------------------------------------------------- c-TF-IDF
def test_terms_are_cjk_aware_and_drop_stopwords():
    assert terms("The cats and THE dogs, 42 times") == ["cats", "dogs", "times"]
    assert terms("床前明月光 月") == ["床前", "前明", "明月", "月光", "月"]


def test_ctfidf_prefers_distinctive_terms():
    from collections import Counter

    # "said" is the most frequent term of both classes, but it is in both: it must lose to rarer, distinctive ones
    top = ctfidf_top_terms([Counter(said=6, soup=5, garlic=4), Counter(said=6, goal=5, pitch=4)], 2)
    assert top == [["soup", "garlic"], ["goal", "pitch"]]
    # overlapping bigrams of one Chinese word give one term of the name, not two
    top = ctfidf_top_terms([Counter({"档案": 5, "案库": 5, "网络": 4}), Counter({"配置": 3})], 2)
    assert top == [["案库", "网络"], ["配置"]]
    assert ctfidf_top_terms([Counter(), Counter(x=1)], 3) == [[], ["x"]]


# --------------------------------------------------------------------------------------------------- auto-topics
def test_auto_topics_separate_three_themes(tmp_path, embedder):
    texts = [t for theme in THEMES for t in _theme_sentences(theme)]
    assert len(set(texts)) == 60
    _write_text(tmp_path / "d", texts, splits=["train"] * 50 + ["test"] * 10)
    summary = annotate(tmp_path / "d", auto_topics=3, seed=0)

    data = open_dataset(tmp_path / "d")
    names = data.features["topic"]["names"]
    topic = data.column("topic")
    for i, theme in enumerate(THEMES):
        in_theme = set(topic[20 * i:20 * (i + 1)])
        assert len(in_theme) == 1, f"{theme} split over topics {in_theme}"
        name = names[in_theme.pop()]
        theme_words = {w.lower().strip(".") for part in THEMES[theme] for phrase in part for w in phrase.split()}
        assert set(name.split("_")[1:]) & theme_words, f"{name} does not name {theme}"
    assert sorted(summary["topics"].values()) == [20, 20, 20] and len(set(topic)) == 3
    assert summary["lines"][0] == "3 topics:" and any(line.startswith("    - ") for line in summary["lines"])

    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 50, "test": 10} and data.column("text") == texts
    step = manifest["steps"][-1]
    assert step["op"] == "annotate" and step["counts"]["topics"] == 3 and step["params"]["auto_topics"] == 3
    assert "parent" not in manifest and step["params"]["replaces_content_sha256"]
    hf = datasets.load_from_disk(str(tmp_path / "d"))
    assert hf["test"].features["topic"].names == names and list(hf["test"]["topic"]) == topic[50:]


def test_auto_topics_rejects_images_and_bad_k(tmp_path):
    with DatasetWriter(tmp_path / "img", "image", base_features("image")) as writer:
        pixels = encode_png(np.zeros((4, 4), np.uint8))
        writer.add({"id": "0", "source": "x", "image": {"bytes": pixels, "path": None}})
        writer.close({})
    with pytest.raises(InputError, match="clusters texts, but .* is an image dataset"):
        annotate(tmp_path / "img", auto_topics=2)
    _write_text(tmp_path / "t", ["one", "two"])
    with pytest.raises(InputError, match="between 1 and the number of texts \\(2\\)"):
        annotate(tmp_path / "t", auto_topics=3)
    with pytest.raises(InputError, match="nothing to do"):
        annotate(tmp_path / "t")


# --------------------------------------------------------------------------------------------------- CSV
def _labelled(tmp_path):
    texts = ["good film", "bad film", "so-so,\n\"film\"", "great", "awful"]
    _write_text(tmp_path / "d", texts, labels=[1, 0, None, 1, 0], names=["pos", "neg"],
                splits=["train", "train", "train", "test", "test"], parent={"path": "raw", "content_sha256": "abc"})
    return tmp_path / "d"


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_export_then_import_is_lossless(tmp_path):
    path = _labelled(tmp_path)
    before = json.loads((path / "manifest.json").read_text())
    annotate(path, export_csv=tmp_path / "labels.csv")
    rows = _read_csv(tmp_path / "labels.csv")
    assert list(rows[0]) == ["id", "split", "label", "preview"]
    assert [(r["id"], r["split"], r["label"]) for r in rows] == [
        ("r000", "train", "neg"), ("r001", "train", "pos"), ("r002", "train", ""), ("r003", "test", "neg"),
        ("r004", "test", "pos")]
    assert rows[2]["preview"] == 'so-so, "film"'

    summary = annotate(path, import_csv=tmp_path / "labels.csv")
    after = json.loads((path / "manifest.json").read_text())
    assert summary["labels_changed"] == 0 and after == before  # nothing changed, nothing rewritten
    assert open_dataset(path).column("label") == [1, 0, None, 1, 0]


def test_import_changes_labels_and_adds_names(tmp_path):
    path = _labelled(tmp_path)
    (tmp_path / "edit.csv").write_text("\ufefflabel,id,note\nneutral,r002,\n,r003,\nneg,r004,x\nneg,r000,\n",
                                       encoding="utf-8")
    summary = annotate(path, import_csv=tmp_path / "edit.csv", export_csv=tmp_path / "out.csv")
    data = open_dataset(path)
    assert data.label_names == ["pos", "neg", "neutral"]  # old names keep their numbers
    assert data.column("label") == [1, 0, 2, None, 1]  # r001 was not in the CSV: unchanged
    assert summary["labels_changed"] == 3
    assert data.manifest["steps"][-1]["counts"] == {"labels_changed": 3, "label_names_added": 1, "topics": 0}
    assert data.manifest["parent"] == {"path": "raw", "content_sha256": "abc"}  # still the same dataset
    assert [r["label"] for r in _read_csv(tmp_path / "out.csv")] == ["neg", "pos", "neutral", "", "neg"]


def test_import_adds_a_label_column_to_an_unlabelled_dataset(tmp_path):
    _write_text(tmp_path / "d", ["a", "b", "c"])
    (tmp_path / "l.csv").write_text("id,label\nr000,zebra\nr002,ant\n", encoding="utf-8")
    annotate(tmp_path / "d", import_csv=tmp_path / "l.csv")
    data = open_dataset(tmp_path / "d")
    assert data.label_names == ["ant", "zebra"] and data.column("label") == [1, None, 0]


@pytest.mark.parametrize("content, message", [
    ("id,label\nr000,pos\nnope,neg\nr999,pos\n", "2 ids that are not in .* \\(e.g. nope, r999\\)"),
    ("identifier,label\nr000,pos\n", "needs a header with `id` and `label`"),
    ("id,label\nr000,pos\nr000,neg\n", "lists id 'r000' twice"),
])
def test_bad_import_leaves_the_dataset_unchanged(tmp_path, content, message):
    path = _labelled(tmp_path)
    before = (path / "manifest.json").read_bytes()
    (tmp_path / "bad.csv").write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        annotate(path, import_csv=tmp_path / "bad.csv")
    assert (path / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "d"]  # no staging directory left


def test_cli_export_for_images_previews_the_source(tmp_path, capsys):
    with DatasetWriter(tmp_path / "img", "image", base_features("image", labels=["a", "b"])) as writer:
        pixels = encode_png(np.zeros((4, 4), np.uint8))
        writer.add({"id": "0", "source": "cats/0.png", "image": {"bytes": pixels, "path": None}, "label": 1})
        writer.close({})
    assert main(["data", "annotate", str(tmp_path / "img"), "--export", str(tmp_path / "l.csv")]) == 0
    assert _read_csv(tmp_path / "l.csv") == [{"id": "0", "split": "train", "label": "b", "preview": "cats/0.png"}]
    assert "exported 1 rows" in capsys.readouterr().out
    assert main(["data", "annotate", str(tmp_path / "img"), "--auto-topics", "2"]) == 2
