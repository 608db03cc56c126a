"""The terminal rater driven by scripted input, and the `eval human` / `eval leaderboard` commands."""

import io
import itertools
import json

import pytest

from genchain.cli import main
from genchain.errors import InputError
from genchain.eval.human import position_bias, rate
from genchain.eval.human_store import Comparison, RatingStore, utc_now


def fill(store, generators=("alpha", "beta"), per=3):
    for name in generators:
        store.add_samples(name, [("", f"<{name} text {i}>") for i in range(per)])


def rounds(output: str) -> list[str]:
    """The output of each pair shown, in order (split on the "pair N" rules)."""
    parts = output.split(" pair ")
    return parts[1:]


def shown_order(chunk: str, store, row) -> tuple[str, str]:
    """The sample ids of a stored judgement in the order the screen showed them (A first), read off the output."""
    texts = {s.id: s.text for g in ("alpha", "beta") for s in store.samples_of(g)}
    a_at, b_at = chunk.index(texts[row.sample_a]), chunk.index(texts[row.sample_b])
    return (row.sample_a, row.sample_b) if a_at < b_at else (row.sample_b, row.sample_a)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_scripted_session_stores_the_right_winners(tmp_path, seed):
    out = io.StringIO()
    with RatingStore.open(tmp_path / "r.db") as store:
        fill(store)
        result = rate(store, ["alpha", "beta"], "ana", input_stream=io.StringIO("a\nb\nt\ns\nq\n"), output=out,
                      seed=seed)
        rows = store.comparisons()
        assert (result.saved, result.skipped, result.ended) == (3, 1, "quit")
        assert len(rows) == 3 and all(r.rater == "ana" and r.source == "terminal" for r in rows)
        chunks = rounds(out.getvalue())
        assert len(chunks) == 5  # a, b, t, s, and the pair left by q
        first, second = shown_order(chunks[0], store, rows[0]), shown_order(chunks[1], store, rows[1])
    winner = {"a": lambda r: r.sample_a, "b": lambda r: r.sample_b}
    assert winner[rows[0].choice](rows[0]) == first[0]  # "a": the text shown as A won
    assert winner[rows[1].choice](rows[1]) == second[1]  # "b": the text shown as B won
    assert rows[2].choice == "tie"
    for row, order in zip(rows, (first, second), strict=False):
        assert row.a_side == ("left" if order[0] == row.sample_a else "right")


def test_sides_are_shuffled(tmp_path):
    sides = []
    for seed in range(8):
        with RatingStore.open(tmp_path / f"s{seed}.db") as store:
            fill(store)
            rate(store, ["alpha", "beta"], "ana", input_stream=io.StringIO("a\na\na\n"), output=io.StringIO(),
                 seed=seed)
            sides += [r.a_side for r in store.comparisons()]
    assert set(sides) == {"left", "right"}


def test_end_of_input_and_ctrl_c_keep_what_was_saved(tmp_path):
    with RatingStore.open(tmp_path / "r.db") as store:
        fill(store)
        result = rate(store, ["alpha", "beta"], "ana", input_stream=io.StringIO("b\n"), output=io.StringIO())
        assert (result.saved, result.ended) == (1, "eof")

        class CtrlC(io.StringIO):
            def readline(self, *args):
                line = super().readline(*args)
                if not line:
                    raise KeyboardInterrupt
                return line

        result = rate(store, ["alpha", "beta"], "ana", input_stream=CtrlC("t\na\n"), output=io.StringIO())
        assert (result.saved, result.ended) == (2, "interrupted")
        assert store.count_comparisons() == 3 and store.comparisons()[1].choice == "tie"


def test_a_bad_key_asks_again(tmp_path):
    out = io.StringIO()
    with RatingStore.open(tmp_path / "r.db") as store:
        fill(store)
        result = rate(store, ["alpha", "beta"], "ana", input_stream=io.StringIO("x\n\nleft\nT\nq\n"), output=out)
        assert result.saved == 1 and store.comparisons()[0].choice == "tie"
    text = out.getvalue()
    assert text.count("is not an answer") == 3 and len(rounds(text)) == 2
    assert "[a] A  [b] B  [t] tie  [s] skip  [q] quit" in text


def test_a_rater_never_sees_the_same_two_samples_twice(tmp_path):
    with RatingStore.open(tmp_path / "r.db") as store:
        fill(store, per=2)  # 2 x 2 = 4 pairs of samples
        first = rate(store, ["alpha", "beta"], "ana", input_stream=io.StringIO("s\n" + "a\n" * 10),
                     output=io.StringIO(), seed=1)
        assert (first.saved, first.skipped, first.ended) == (3, 1, "exhausted")  # the skipped pair is not re-offered
        again = rate(store, ["alpha", "beta"], "ana", input_stream=io.StringIO("a\n" * 10), output=io.StringIO())
        assert (again.saved, again.ended) == (1, "exhausted")  # only the pair skipped last time is left
        other = rate(store, ["alpha", "beta"], "bo", input_stream=io.StringIO("a\n" * 10), output=io.StringIO())
        assert other.saved == 4
        for rater in ("ana", "bo"):
            pairs = [frozenset((r.sample_a, r.sample_b)) for r in store.comparisons(rater)]
            assert len(pairs) == len(set(pairs)) == 4


def test_the_least_compared_generators_come_first(tmp_path):
    names = ["g1", "g2", "g3"]
    with RatingStore.open(tmp_path / "r.db") as store:
        fill(store, names, per=4)
        rate(store, names, "ana", input_stream=io.StringIO("a\n" * 6), output=io.StringIO(), seed=3)
        counts = {pair: 0 for pair in itertools.combinations(names, 2)}
        for row in store.comparisons():
            counts[tuple(sorted((row.generator_a, row.generator_b)))] += 1
        assert set(counts.values()) == {2}
        # a new rater starts from the counts of everyone: after a pair of g1/g2 the next is not g1/g2 again
        store.add_comparison(store.samples_of("g1")[0].id, store.samples_of("g2")[0].id, "bo", "a", "left")
        rate(store, names, "cy", input_stream=io.StringIO("a\n" * 2), output=io.StringIO(), seed=4)
        latest = store.comparisons("cy")
        assert all({r.generator_a, r.generator_b} != {"g1", "g2"} for r in latest)


def test_pairs_limit_seconds_and_layouts(tmp_path):
    ticks = itertools.count(0.0, 2.5)
    with RatingStore.open(tmp_path / "r.db") as store:
        store.add_samples("alpha", [("Prompt: ", "[bold]not markup[/bold]")])
        store.add_samples("beta", [("Prompt: ", "plain")])
        wide = io.StringIO()
        result = rate(store, ["alpha", "beta"], "ana", input_stream=io.StringIO("a\na\n"), output=wide,
                      max_pairs=1, width=120, clock=lambda: next(ticks))
        assert (result.saved, result.ended) == (1, "limit")
        assert store.comparisons()[0].seconds == 2.5
    lines = wide.getvalue().splitlines()
    assert any("[bold]not markup[/bold]" in line and "plain" in line for line in lines)  # side by side, literal


def test_fewer_than_two_generators(tmp_path):
    with RatingStore.open(tmp_path / "r.db") as store:
        fill(store, ("alpha",))
        with pytest.raises(InputError, match="at least 2 generators"):
            rate(store, ["alpha", "alpha"], "ana", input_stream=io.StringIO(""), output=io.StringIO())
        with pytest.raises(InputError, match="has no samples"):
            rate(store, ["alpha", "ghost"], "ana", input_stream=io.StringIO(""), output=io.StringIO())


def test_position_bias_known_answer():
    def row(choice, side):
        return Comparison(0, "x", "y", "A", "B", "r", choice, side, None, utc_now(), "test")

    rows = [row("a", "left"), row("b", "right"), row("b", "left"), row("tie", "left")]
    assert position_bias(rows) == (2 / 3, 3)  # the first-shown text won 2 of the 3 decided judgements
    assert position_bias([row("tie", "left")]) == (None, 0)


# ---- the commands ---------------------------------------------------------------------------------------------


def samples_file(path, texts, run):
    path.write_text("".join(json.dumps({"run": run, "prompt": "", "text": t, "seed": 0, "index": i}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return str(path)


def test_cli_session_then_leaderboard(tmp_path, monkeypatch, capsys):
    a = samples_file(tmp_path / "a.jsonl", [f"good {i}" for i in range(6)], "runs/good")
    b = samples_file(tmp_path / "b.jsonl", [f"bad {i}" for i in range(6)], "runs/bad")
    db = str(tmp_path / "r.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("a\nb\nt\nq\n"))
    assert main(["eval", "human", "--samples", a, b, "--db", db, "--rater", "ana", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "runs/good: 6 samples" in out and "saved 3 judgements (0 skipped)" in out
    assert main(["eval", "human", "--samples", a, b, "--db", db, "--names", "G", "B", "--pairs", "1"]) == 0
    assert "(6 new)" in capsys.readouterr().out  # new names: new generators
    with RatingStore.open(db) as store:
        assert store.count_comparisons() == 3  # stdin was used up: the second session saved nothing
        good, bad = store.samples_of("runs/good"), store.samples_of("runs/bad")
        for i in range(30):  # 30 : 10 for runs/good
            store.add_comparison(good[i % 6].id, bad[(i + 1) % 6].id, "bo", "a", "left")
        for i in range(10):
            store.add_comparison(good[i % 6].id, bad[i % 6].id, "bo", "b", "right")
        rows = store.comparisons()
    assert main(["eval", "leaderboard", "--db", db, "--json", "--bootstrap", "50"]) == 0
    document = json.loads(capsys.readouterr().out)
    # with two generators the MLE of P(good beats bad) is good's share of the wins (a tie is half a win)
    share = sum({"a": 1.0, "tie": 0.5, "b": 0.0}[r.choice] if r.generator_a == "runs/good"
                else {"a": 0.0, "tie": 0.5, "b": 1.0}[r.choice] for r in rows) / len(rows)
    assert [g["name"] for g in document["generators"]] == ["runs/good", "runs/bad"]
    assert document["comparisons"] == 43 and document["raters"] == 2
    assert document["pairwise"]["runs/good"]["runs/bad"] == pytest.approx(share, abs=2e-3)
    assert main(["eval", "leaderboard", "--db", db, "--bootstrap", "20"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[1].split()[:2] == ["1", "runs/good"] and "43 judgements" in table


@pytest.mark.parametrize("files, extra, message", [
    (["a"], [], "at least 2 generators"),
    (["a", "a2"], [], "both hold generator 'runs/a'"),
    (["a", "empty"], [], "is empty"),
    (["a", "notext"], [], 'line 1: no "text"'),
    (["a", "broken"], [], "line 2: not valid JSON"),
    (["a", "b"], ["--names", "only-one"], "--names gives 1 names for 2"),
    (["a", "b"], ["--db", "mysql://me@host/db"], "'mysql' databases are not supported"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, files, extra, message):
    paths = {"a": samples_file(tmp_path / "a.jsonl", ["x"], "runs/a"),
             "a2": samples_file(tmp_path / "a2.jsonl", ["y"], "runs/a"),
             "b": samples_file(tmp_path / "b.jsonl", ["z"], "runs/b")}
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "notext.jsonl").write_text('{"txt": "typo"}\n')
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    paths.update({k: str(tmp_path / f"{k}.jsonl") for k in ("empty", "notext", "broken")})
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    db = ["--db", str(tmp_path / "r.db")] if "--db" not in extra else []
    assert main(["eval", "human", "--samples", *(paths[f] for f in files), *db, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.db").exists()  # every file is checked before the store is touched


def test_leaderboard_on_an_empty_store(tmp_path, capsys):
    assert main(["eval", "leaderboard", "--db", str(tmp_path / "empty.db")]) == 2
    assert "nothing to rank" in capsys.readouterr().err


def test_as_a_user_runs_it(tmp_path):
    import subprocess
    import sys

    def genchain(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "genchain", *args], input=stdin, capture_output=True,
                              text=True, timeout=120)

    for command in ("human", "leaderboard"):
        assert "examples:" in genchain("eval", command, "--help").stdout
    a = samples_file(tmp_path / "a.jsonl", ["one", "two"], "runs/a")
    b = samples_file(tmp_path / "b.jsonl", ["uno", "dos"], "runs/b")
    db = str(tmp_path / "r.db")
    run = genchain("eval", "human", "--samples", a, b, "--db", db, "--rater", "ana", stdin="a\nb\n")
    assert run.returncode == 0 and "saved 2 judgements" in run.stdout, run.stderr
    board = genchain("eval", "leaderboard", "--db", db, "--bootstrap", "10")
    assert board.returncode == 0 and "2 judgements (0 ties) by 1 rater" in board.stdout
    bad = genchain("eval", "leaderboard", "--db", "mysql://me@host/db")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
