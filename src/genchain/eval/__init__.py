"""Evaluation of generated content, by metrics and by people.

- images: :mod:`genchain.eval.image` (FID, KID, precision/recall) on features from
  :mod:`genchain.eval.features` or :mod:`genchain.eval.inception`;
- text: :mod:`genchain.eval.text` (distinct-n, self-BLEU, repetition, MAUVE, semantic diversity),
  :mod:`genchain.eval.novelty` (verbatim copies of the training text), :mod:`genchain.eval.scorer` (perplexity),
  run by :mod:`genchain.eval.text_eval` and drawn by :mod:`genchain.eval.report_text`;
- people: :mod:`genchain.eval.human_store` (pairwise ratings in SQLite or PostgreSQL),
  :mod:`genchain.eval.human` (the terminal rater) and :mod:`genchain.eval.bradley_terry` (the leaderboard).
"""
