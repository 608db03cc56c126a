"""Evaluation of generated content: :mod:`genchain.eval.image` measures image generators (FID, KID,
precision/recall) on features from :mod:`genchain.eval.features` or :mod:`genchain.eval.inception`."""
