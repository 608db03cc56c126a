"""``genchain data clean --executor dask``: the same dataset, row for row, as the local run.

The corpus is cut into many small partitions (40 rows per record batch) and holds exact and near duplicates whose
first occurrence lies in another partition and another split than the copy, so a run that decided dedup per
partition instead of in dataset order would keep rows that the local run drops.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from genchain.data.clean import clean
from genchain.data.dataset import DatasetWriter, base_features, content_hash, make_step, open_dataset
from genchain.data.executor import LocalExecutor, open_executor
from genchain.errors import InputError

pytest.importorskip("dask.distributed")

WORDS = ("harbour quiet dawn fishing boats rocked gently against old stone pier gulls circled above market "
         "opened bread smelled warm children ran along sea wall sails white wind rose river bridge lanterns").split()


def _corpus(n: int = 400, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 40))) for _ in range(n)]
    for i in range(0, n, 9):  # near duplicates: one word of ~30 changed, far from their original
        words = docs[i].split()
        words[rng.randrange(len(words))] = "zebra"
        docs[(i + 137) % n] = " ".join(words)
    for i in range(5, n, 23):  # exact duplicates up to case and punctuation
        docs[(i + 211) % n] = docs[i].upper() + "!"
    for i in range(3, n, 31):
        docs[i] += f" write to person{i}@example.org"
    docs[17] = "tiny"
    train, test = docs[: n * 3 // 4], docs[n * 3 // 4 :] + docs[:10]  # test repeats train's first rows
    return train, test


def _dataset(path, train, test):
    with DatasetWriter(path, "text", base_features("text"), batch_rows=40) as writer:
        for split, texts in (("train", train), ("test", test)):
            for i, text in enumerate(texts):
                writer.add({"id": f"{split}-{i}", "source": "gen.txt", "text": text}, split=split)
        writer.close({"sources": [{"path": "gen.txt", "licence": "CC0-1.0"}],
                      "steps": [make_step("ingest", {}, rows_in=None, rows_out=len(train) + len(test),
                                          started=time.time())]})


def _rows(path):
    dataset = open_dataset(path)
    return [(split, row) for split, batch in dataset.batches() for row in batch.to_pylist()]


@pytest.mark.slow
def test_dask_clean_writes_the_same_dataset_as_the_local_run(tmp_path):
    _dataset(tmp_path / "in", *_corpus())
    assert sum(1 for _ in open_dataset(tmp_path / "in").batches()) >= 10  # really many partitions
    options = {"dedup": ("exact", "near"), "redact_pii": True, "min_chars": 10}
    local = clean(tmp_path / "in", tmp_path / "local", **options)
    dask = clean(tmp_path / "in", tmp_path / "dask", executor="dask", workers=2, **options)

    counts = local["steps"][-1]["counts"]
    assert counts["removed"]["exact_duplicate"] >= 15 and counts["removed"]["near_duplicate"] >= 30
    assert counts["removed"]["min_chars"] == 1 and counts["changed"]["redacted"]["EMAIL"] >= 10
    assert _rows(tmp_path / "dask") == _rows(tmp_path / "local")
    assert content_hash(tmp_path / "dask", ["train", "test"]) == content_hash(tmp_path / "local", ["train", "test"])
    assert json.dumps(dask["steps"][-1]["counts"], sort_keys=True) == json.dumps(counts, sort_keys=True)
    assert dask["splits"] == local["splits"]


def test_executors_map_in_input_order_and_reject_bad_options():
    assert list(LocalExecutor().map(lambda x, k: x * k, range(5), 3)) == [0, 3, 6, 9, 12]
    with pytest.raises(InputError, match="unknown executor"):
        with open_executor("spark"):
            pass
    with pytest.raises(InputError, match="at least 1"):
        with open_executor("dask", workers=0):
            pass


@pytest.mark.slow
def test_dask_executor_keeps_order_across_workers():
    with open_executor("dask", workers=2) as runner:
        assert runner.workers == 2
        assert list(runner.map(pow, range(30), 2)) == [i * i for i in range(30)]
