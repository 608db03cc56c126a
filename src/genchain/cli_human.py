"""``genchain eval human`` (the terminal rater) and ``genchain eval leaderboard`` (Bradley-Terry ratings).

Both use the ratings store of :mod:`genchain.eval.human_store` (``--db``: a path, ``sqlite:///PATH`` or
``postgresql://...``; default ``$GENCHAIN_HOME/ratings.db``), which the web page will share.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from pathlib import Path

from genchain.errors import InputError


def cmd_eval_human(args: argparse.Namespace) -> None:
    """Judge generated texts two at a time, blind: which of A and B is better? Each answer is saved at once.

    Each FILE is a .jsonl of samples from one generator, one {"text": ...} per line (as `genchain generate text
    -o FILE.jsonl` writes). A generator is named by --names, else by the records' "generator" or "run" field, else
    by the file name; importing a file again adds nothing. Pairs come from the generators compared least so far,
    sides are shuffled, and a rater never sees the same two samples twice. Answer a, b, t (tie), s (skip) or
    q (quit); Ctrl-C and Ctrl-D also stop, keeping every answer given. Rank them with `genchain eval leaderboard`.

    examples:
      genchain eval human --samples base.jsonl tuned.jsonl
      genchain eval human --samples a.jsonl b.jsonl c.jsonl --rater ana --pairs 20
      genchain eval human --samples t07.jsonl t10.jsonl --names temp-0.7 temp-1.0 --db postgresql://me@db/ratings
    """
    from genchain.eval.human import rate
    from genchain.eval.human_store import RatingStore, read_samples_file

    if args.names and len(args.names) != len(args.samples):
        raise InputError(f"--names gives {len(args.names)} names for {len(args.samples)} samples files; give one "
                         "per file, in the same order")
    if args.pairs is not None and args.pairs < 1:
        raise InputError("--pairs must be at least 1")
    loaded: dict[str, tuple[str, list[dict]]] = {}
    for i, path in enumerate(args.samples):
        records, carried = read_samples_file(path)  # check every file before writing anything
        name = args.names[i] if args.names else carried or Path(path).stem
        if name in loaded:
            raise InputError(f"{loaded[name][0]} and {path} both hold generator {name!r}; name them apart with "
                             "--names NAME1 NAME2 ...")
        loaded[name] = (path, records)
    if len(loaded) < 2:
        raise InputError(f"need samples from at least 2 generators to compare; got 1 ({next(iter(loaded))}); "
                         "pass two or more --samples files")
    rater = args.rater or _login_name()
    with RatingStore.open(args.db) as store:
        for name, (path, records) in loaded.items():
            result = store.add_samples(name, [(str(r.get("prompt") or ""), r["text"]) for r in records], str(path))
            print(f"{name}: {result.records} samples from {path} ({result.added} new)")
        rate(store, list(loaded), rater, max_pairs=args.pairs, seed=args.seed)


def cmd_eval_leaderboard(args: argparse.Namespace) -> None:
    """Rank generators from every judgement in the ratings store: Bradley-Terry scores with bootstrap intervals.

    Scores are Elo-style points (the field's average is 1000; 400 points more means 10:1 odds of winning a
    comparison); ties count half a win for each side. "win" is the chance of beating an opponent drawn at
    random from the others; the online Elo column replays judgements in order, for comparison only. The last
    line says how often the text shown first (A) won: far from 50 % means raters favour a position.

    examples:
      genchain eval leaderboard
      genchain eval leaderboard --json > leaderboard.json
      genchain eval leaderboard --bootstrap 5000 --seed 1 --db postgresql://me@db/ratings
    """
    from genchain.eval.bradley_terry import rank
    from genchain.eval.human import outcomes, position_bias
    from genchain.eval.human_store import RatingStore

    if args.bootstrap < 0:
        raise InputError("--bootstrap must be 0 (no intervals) or more")
    with RatingStore.open(args.db) as store:
        rows = store.comparisons()
        where = store.name
    results = outcomes(rows)
    if not results:
        raise InputError(f"no judgements in {where}: nothing to rank yet; collect some with "
                         "`genchain eval human --samples A.jsonl B.jsonl`")
    names = sorted({name for a, b, _ in results for name in (a, b)})
    board = rank(names, results, rounds=args.bootstrap, seed=args.seed)
    first_share, decided = position_bias(rows)
    raters = len({row.rater for row in rows})
    if args.json:
        document = board.to_json()
        document.update(store=where, raters=raters, position={"first_shown_won": first_share, "decided": decided})
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return
    width = max(9, *(len(r.name) for r in board.ratings))
    level = f"{board.confidence:.0%}"
    print(f"rank  {'generator':<{width}}  score  {level + ' interval':>13}   win  {'interval':>11}    elo     n  "
          "W-L-T")
    for place, r in enumerate(board.ratings, 1):
        score_ci = f"{r.score_ci[0]:.0f} - {r.score_ci[1]:.0f}" if r.score_ci else "-"
        win_ci = f"{r.win_prob_ci[0]:.2f} - {r.win_prob_ci[1]:.2f}" if r.win_prob_ci else "-"
        print(f"{place:>4}  {r.name:<{width}}  {r.score:5.0f}  {score_ci:>13}  {r.win_prob:4.2f}  {win_ci:>11}  "
              f"{r.elo:5.0f}  {r.comparisons:4d}  {r.wins}-{r.losses}-{r.ties}")
    bias = f"; A (shown first) won {first_share:.0%} of {decided} decided" if first_share is not None else ""
    print(f"{board.comparisons} judgements ({board.ties} tie{'s' * (board.ties != 1)}) by {raters} "
          f"rater{'s' * (raters != 1)}{bias}; "
          f"{board.bootstrap} bootstrap rounds, seed {board.seed}")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except OSError:  # no login name in the environment or the password database (some containers)
        return "anonymous"


def add_human_eval_commands(evaluate: argparse._SubParsersAction, command: Callable) -> None:
    p = command(evaluate, "human", cmd_eval_human, "judge generated texts in pairs (terminal)")
    p.add_argument("--samples", nargs="+", required=True, metavar="FILE.jsonl", help="one file per generator")
    p.add_argument("--names", nargs="+", metavar="NAME", help="the generators' names, one per file")
    p.add_argument("--rater", help="who is judging (default: your login name)")
    p.add_argument("--db", metavar="URL", help="ratings store: path or URL (default $GENCHAIN_HOME/ratings.db)")
    p.add_argument("--pairs", type=int, metavar="N", help="stop after N judgements (default: until you quit)")
    p.add_argument("--seed", type=int, help="same seed, same order of pairs and sides")
    p = command(evaluate, "leaderboard", cmd_eval_leaderboard, "Bradley-Terry ratings from the human judgements")
    p.add_argument("--db", metavar="URL", help="ratings store: path or URL (default $GENCHAIN_HOME/ratings.db)")
    p.add_argument("--json", action="store_true", help="print the leaderboard as JSON")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="refits for the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
