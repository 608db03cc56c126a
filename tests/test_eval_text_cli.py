"""``genchain eval text`` end to end, samples files, references in every form, and the HTML report."""

from __future__ import annotations

import json

import pytest

from conftest import make_corpus
from genchain.cli import main
from genchain.errors import InputError
from genchain.eval.text_reference import Reference, load_reference, reference_passages
from genchain.eval.text_samples import SampleSettings, samples_from_jsonl, samples_from_run


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_samples_file_errors_name_the_line(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        samples_from_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="holds 0 sample"):
        samples_from_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": "b"\n')
    with pytest.raises(InputError, match=r"bad.jsonl line 2: not valid JSON"):
        samples_from_jsonl(tmp_path / "bad.jsonl")
    _jsonl(tmp_path / "notext.jsonl", [{"text": "a"}, {"text": "b"}, {"body": "c"}])
    with pytest.raises(InputError, match=r"notext.jsonl line 3: no \"text\""):
        samples_from_jsonl(tmp_path / "notext.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        samples_from_jsonl(tmp_path / "latin1.jsonl")


def test_samples_file_keeps_texts_and_generator_name(tmp_path):
    rows = [{"text": "one\u2028line", "generator": "gpt-x", "seed": 1}, {"text": "two", "generator": "gpt-x"}]
    samples = samples_from_jsonl(_jsonl(tmp_path / "s.jsonl", rows))
    assert samples.name == "gpt-x" and samples.texts == ["one\u2028line", "two"]
    assert samples_from_jsonl(_jsonl(tmp_path / "plain.jsonl", [{"text": "a"}, {"text": "b"}])).name == "plain"


def test_reference_from_token_dataset_decodes_the_train_split_into_documents(tmp_path):
    from genchain.data.tokens import prepare_text

    first, second = make_corpus(40, seed=1), make_corpus(400, seed=2)
    (tmp_path / "a.txt").write_text(first)
    (tmp_path / "b.txt").write_text(second)
    for kind in ("char", "bpe"):
        prepare_text([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], tmp_path / kind, tokenizer=kind,
                     vocab_size=300)
        reference = load_reference(tmp_path / kind)
        assert reference.documents[0].strip() == first.strip()  # the separator between documents is gone
        assert len(reference.documents) == 2 and second.startswith(reference.documents[1].strip())
        assert len(reference.documents[1]) < len(second)  # the val split is not reference text


def test_reference_from_text_dataset_and_files(tmp_path):
    from genchain.data.ingest import ingest

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha beta gamma\n")
    (tmp_path / "src" / "b.txt").write_text("delta epsilon\n")
    ingest([str(tmp_path / "src")], tmp_path / "ds", kind="text")
    assert sorted(load_reference(tmp_path / "ds").documents) == ["alpha beta gamma\n", "delta epsilon\n"]
    rows = _jsonl(tmp_path / "r.jsonl", [{"text": "x y z"}, {"text": "  "}, {"text": "u v"}])
    assert load_reference(rows).documents == ["x y z", "u v"]
    with pytest.raises(InputError, match="holds no text"):
        load_reference(_jsonl(tmp_path / "blank.jsonl", [{"text": " "}]))


def test_reference_passages_cut_long_documents():
    words = " ".join(f"w{i}" for i in range(300))  # 1,489 characters
    passages = reference_passages(Reference("x", [words, "short one"], ["a", "b"]), num=100, target_chars=100)
    assert "short one" in passages
    assert " ".join(p for p in passages if p != "short one") == words  # consecutive pieces, cut at spaces
    assert all(len(p) <= 200 for p in passages)
    chinese = reference_passages(Reference("z", ["床前明月光" * 100], ["p"]), num=100, target_chars=50)
    assert [len(p) for p in chinese] == [50] * 10
    assert len(reference_passages(Reference("x", [words], ["a"]), num=3, target_chars=100, seed=1)) == 3


@pytest.mark.slow
def test_eval_text_cli_run_and_samples_to_json_and_html(tiny_run, tmp_path, capsys):
    hostile = [{"text": "<script>alert(1)</script> the cat sees the moon.", "generator": "evil"},
               {"text": "the cat sees the moon. the king calls a rose.", "generator": "evil"},
               {"text": "a dog finds the garden.", "generator": "evil"}]
    samples = _jsonl(tmp_path / "evil.jsonl", hostile)
    out, html_path = tmp_path / "m.json", tmp_path / "r.html"
    status = main(["eval", "text", "--run", str(tiny_run), "--samples", str(samples), "--num", "6",
                   "--max-new-tokens", "40", "--out", str(out), "--report", str(html_path), "--device", "cpu"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "generator" in printed and "evil" in printed and "reference" in printed
    report = json.loads(out.read_text())
    assert [g["name"] for g in report["generators"]] == ["tiny", "evil"]
    gpt, evil = report["generators"]
    assert gpt["num"] == 6 and gpt["perplexity"]["perplexity"] > 1 and "val_loss" in gpt["learning_curve"]
    assert evil["perplexity"]["perplexity"] is None  # no --scorer: a samples file is not scored
    assert 0 <= gpt["mauve"] <= 1 and 0 <= evil["novelty"]["orders"]["8"]["copied_share"] <= 1
    assert report["reference"]["source"].endswith("char")  # the run card's dataset
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") >= 3 and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "http" not in page.replace("http-equiv", "")


def test_eval_text_cli_errors(tmp_path, capsys):
    assert main(["eval", "text"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main(["eval", "text", "--samples", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["eval", "text", "--run", str(tmp_path)]) == 2
    assert "not a genchain run dir" in capsys.readouterr().err


@pytest.mark.slow
def test_samples_from_gpt_run_are_documents_and_reproducible(tiny_run):
    settings = SampleSettings(num=4, seed=3, max_new_tokens=30, batch_size=3)
    first, again = samples_from_run(tiny_run, settings), samples_from_run(tiny_run, settings)
    assert first.texts == again.texts and len(first.texts) == 4
    assert all("\n\n" not in t for t in first.texts)  # cut at the first document break
    assert first.family == "text" and first.origin["sampling"]["seed"] == 3


@pytest.mark.slow
def test_samples_from_text_vae_run(tmp_path, corpus_file):
    pytest.importorskip("genchain.generate.text_vae")
    from genchain.data.ingest import ingest
    from genchain.train.text_vae import train_text_vae

    ingest([str(corpus_file)], tmp_path / "ds", kind="text", unit="line")
    train_text_vae(tmp_path / "ds", tmp_path / "vae", overrides=["model=text-vae-tiny", "max_iters=3",
                                                                   "eval_interval=3", "tensorboard=false",
                                                                   "bpe_vocab=300", "eval_sentences=20"])
    samples = samples_from_run(tmp_path / "vae", SampleSettings(num=5, seed=1))
    assert samples.family == "text-vae" and len(samples.texts) == 5
    assert all(isinstance(t, str) for t in samples.texts)
    assert samples.texts == samples_from_run(tmp_path / "vae", SampleSettings(num=5, seed=1)).texts
