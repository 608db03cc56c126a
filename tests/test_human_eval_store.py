"""The ratings store on real SQLite files (and a real PostgreSQL server when one can be started): idempotent
imports, durable judgements, foreign keys, bad files and URLs."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from genchain.errors import InputError
from genchain.eval import human_store
from genchain.eval.human_store import RatingStore, read_samples_file, sample_id


def write_samples(path, texts, run="runs/x", prompt="Q:"):
    path.write_text("".join(json.dumps({"run": run, "prompt": prompt, "text": t, "seed": 1, "index": i}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return path


def test_import_is_idempotent_and_content_addressed(tmp_path):
    samples = write_samples(tmp_path / "base.jsonl", ["one", "two", "two", "three"])
    with RatingStore.open(tmp_path / "r.db") as store:
        first = store.import_file(samples)
        assert (first.generator, first.records, first.added, first.duplicates) == ("runs/x", 4, 3, 1)
        again = store.import_file(samples)
        assert (again.added, again.records) == (0, 4)
        assert store.import_file(samples, name="other").added == 3  # the same texts from another generator differ
        assert store.generator_names() == ["other", "runs/x"]
        stored = store.samples_of("runs/x")
    assert sorted(s.text for s in stored) == ["one", "three", "two"]
    assert {s.id for s in stored} == {sample_id("runs/x", "Q:", t) for t in ("one", "two", "three")}
    assert sample_id("g", "p", "t") != sample_id("g", "", "pt")  # the parts are separated, not concatenated


def test_default_location_is_under_genchain_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "home"))
    with RatingStore.open() as store:
        assert store.name == str(tmp_path / "home" / "ratings.db")
    assert (tmp_path / "home" / "ratings.db").is_file()


def test_sqlite_runs_wal_with_foreign_keys_and_a_schema_version(tmp_path):
    db = tmp_path / "r.db"
    RatingStore.open(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM ratings_meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
        t.name for t in human_store.metadata.sorted_tables}
    conn.close()


def test_a_newer_schema_is_refused(tmp_path):
    db = tmp_path / "r.db"
    with RatingStore.open(db) as store, store._write() as conn:
        conn.execute(update(human_store.ratings_meta).values(value="99"))
    with pytest.raises(InputError, match="schema version 99"):
        RatingStore.open(db)


def test_judgements_survive_a_crash_right_after_commit(tmp_path):
    db = tmp_path / "r.db"
    samples_a = write_samples(tmp_path / "a.jsonl", ["alpha"], run="A")
    samples_b = write_samples(tmp_path / "b.jsonl", ["beta"], run="B")
    script = textwrap.dedent(f"""
        import os, signal
        from genchain.eval.human_store import RatingStore
        store = RatingStore.open({str(db)!r})
        a = store.import_file({str(samples_a)!r}).sample_ids[0]
        b = store.import_file({str(samples_b)!r}).sample_ids[0]
        store.add_comparison(a, b, rater="ana", choice="b", a_side="right", seconds=3.25, source="terminal")
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: the WAL holds the commit
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "r.db-wal").exists()
    with RatingStore.open(db) as store:  # a fresh engine in this process
        [row] = store.comparisons()
    assert (row.generator_a, row.generator_b, row.rater, row.choice, row.a_side, row.seconds, row.source) == (
        "A", "B", "ana", "b", "right", 3.25, "terminal")
    assert row.created_at.tzinfo == timezone.utc
    assert abs(datetime.now(timezone.utc) - row.created_at) < timedelta(minutes=5)


def test_foreign_keys_and_checks_are_enforced(tmp_path):
    with RatingStore.open(tmp_path / "r.db") as store:
        a = store.add_samples("A", [("", "alpha")]).sample_ids[0]
        b = store.add_samples("B", [("", "beta")]).sample_ids[0]
        with pytest.raises(InputError, match="not in ratings store"):
            store.add_comparison(a, "0" * 64, rater="ana", choice="a", a_side="left")
        with pytest.raises(InputError, match="choice"):
            store.add_comparison(a, b, rater="ana", choice="left", a_side="left")
        with pytest.raises(InputError, match="itself"):
            store.add_comparison(a, a, rater="ana", choice="a", a_side="left")
        row = {"sample_a": a, "sample_b": b, "rater": "r", "choice": "a", "a_side": "left",
               "created_at": human_store.utc_now(), "source": "test"}
        with pytest.raises(IntegrityError), store._write() as conn:  # the database itself refuses, not only our code
            conn.execute(insert(human_store.comparisons).values(**{**row, "sample_b": "f" * 64}))
        with pytest.raises(IntegrityError), store._write() as conn:
            conn.execute(insert(human_store.comparisons).values(**{**row, "choice": "x"}))
        with pytest.raises(IntegrityError), store._write() as conn:
            conn.execute(insert(human_store.samples).values(id="1" * 64, generator="nobody", prompt="", text="t",
                                                            created_at=human_store.utc_now()))
        assert store.count_comparisons() == 0
        store.add_comparison(a, b, rater="ana", choice="tie", a_side="left", seconds=None)
        assert [c.choice for c in store.comparisons()] == ["tie"]
        assert store.comparisons(rater="someone else") == []


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("\n  \n", "is empty"),
    ('{"text": "fine"}\n{"prompt": "no text"}\n', "line 2: no \"text\""),
    ('{"text": "fine"}\n\n{"text": "x",}\n', "line 3: not valid JSON"),
    ('["text"]\n', "line 1: no \"text\""),
    ('{"text": 5}\n', "line 1: no \"text\""),
    ('{"text": "a", "run": "r1"}\n{"text": "b", "run": "r2"}\n', "mixes samples of several generators"),
])
def test_bad_samples_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "s.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_samples_file(path)


def test_samples_file_names_and_encoding(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_samples_file(tmp_path / "missing.jsonl")
    (tmp_path / "latin.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_samples_file(tmp_path / "latin.jsonl")
    (tmp_path / "named.jsonl").write_text('{"text": "a", "generator": "g1", "run": "r"}\n', encoding="utf-8")
    assert read_samples_file(tmp_path / "named.jsonl")[1] == "g1"  # "generator" wins over "run"
    (tmp_path / "plain.jsonl").write_text('{"text": "夜"}\n', encoding="utf-8")
    records, name = read_samples_file(tmp_path / "plain.jsonl")
    assert name is None and records == [{"text": "夜"}]


def test_bad_locations_are_refused_clearly(tmp_path):
    with pytest.raises(InputError, match="'mysql' databases are not supported"):
        RatingStore.open("mysql://me@db/ratings")
    with pytest.raises(InputError, match="not a database URL"):
        RatingStore.open("carrier-pigeon://coop")
    with pytest.raises(InputError, match="'oracle' databases are not supported"):
        RatingStore.open("oracle://scott@db/orcl")
    (tmp_path / "notes.txt").write_text("hello, not a database\n")
    with pytest.raises(InputError, match="not a SQLite database"):
        RatingStore.open(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="is a directory"):
        RatingStore.open(tmp_path)
    with RatingStore.open(f"sqlite:///{tmp_path / 'by-url.db'}") as store:
        assert store.count_comparisons() == 0


def test_shares_a_database_with_other_tables(tmp_path):
    db = tmp_path / "shared.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE api_keys (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with RatingStore.open(db) as store:
        store.add_samples("A", [("", "x")])
        assert store.generator_names() == ["A"]


def test_postgresql_store(postgres_url):
    with RatingStore.open(postgres_url) as store:
        a = store.add_samples("A", [("p", "alpha"), ("p", "alpha 2")]).sample_ids
        b = store.add_samples("B", [("p", "beta")]).sample_ids
        assert store.add_samples("A", [("p", "alpha")]).added == 0
        first = store.add_comparison(a[0], b[0], rater="ana", choice="a", a_side="right", seconds=1.5)
        second = store.add_comparison(a[1], b[0], rater="bo", choice="tie", a_side="left", source="web")
        assert second > first
        with pytest.raises(InputError, match="not in ratings store"):
            store.add_comparison(a[0], "0" * 64, rater="ana", choice="a", a_side="left")
    with RatingStore.open(postgres_url) as store:
        rows = store.comparisons()
        assert [(r.generator_a, r.generator_b, r.choice, r.source) for r in rows] == [
            ("A", "B", "a", "terminal"), ("A", "B", "tie", "web")]
        assert rows[0].created_at.tzinfo is not None and rows[0].seconds == 1.5
        assert os.environ.get("GENCHAIN_HOME")  # nothing went to ~/.genchain
