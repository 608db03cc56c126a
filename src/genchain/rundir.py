"""The run directory: what a training run leaves on disk, and the checks that keep runs apart.

Layout (every file written atomically; ``card.json`` says which family and model the run holds)::

    RUN_DIR/
      config.yaml          the resolved recipe config (schema_version inside)
      card.json            family, model name, data manifest hash, best metrics, environment
      model.safetensors    best weights (fp32), what generation loads
      last.safetensors     weights after the last completed iteration
      state.pt             optimizer, RNG and data-sampler state for --resume (matches last.safetensors)
      metrics.jsonl        one JSON object per logged train / eval point
      tokenizer.json       (text families) the tokenizer the run was trained with
      tb/                  TensorBoard event files
      samples/             generated samples written during training
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genchain.errors import RunDirError
from genchain.fileio import SCHEMA_VERSION, atomic_write_json

CARD = "card.json"
CONFIG = "config.yaml"
BEST_WEIGHTS = "model.safetensors"
LAST_WEIGHTS = "last.safetensors"
STATE = "state.pt"
METRICS = "metrics.jsonl"
TOKENIZER = "tokenizer.json"


def read_card(run_dir: str | Path) -> dict[str, Any]:
    """The run's card; raises RunDirError when ``run_dir`` is not a genchain run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run dir {run_dir} does not exist; train one with `genchain train ...` first")
    path = run_dir / CARD
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a genchain run dir (no {CARD}); pass the --out of a `genchain train`")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is corrupt ({err}); the run cannot be identified") from err
    if card.get("schema_version", 0) > SCHEMA_VERSION:
        raise RunDirError(f"{run_dir} was written by a newer genchain (schema {card['schema_version']}); upgrade")
    return card


def require_family(run_dir: str | Path, family: str) -> dict[str, Any]:
    """Read the card and check that the run holds a model of ``family``."""
    card = read_card(run_dir)
    if card.get("family") != family:
        raise RunDirError(
            f"{run_dir} holds a {card.get('family', '?')!r} model ({card.get('model', '?')}), "
            f"not a {family!r} one; pass a run dir trained with the matching `genchain train` command"
        )
    return card


def write_card(run_dir: str | Path, card: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / CARD, {"schema_version": SCHEMA_VERSION, **card})


def prepare_new_run(run_dir: str | Path, resume: bool) -> Path:
    """Create ``run_dir`` for a fresh run, refusing to overwrite one that already holds a model."""
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / STATE).is_file():
            raise RunDirError(f"cannot resume: {run_dir / STATE} does not exist; start without --resume")
        return run_dir
    if (run_dir / STATE).exists() or (run_dir / BEST_WEIGHTS).exists():
        raise RunDirError(
            f"{run_dir} already holds a trained run; pass --resume to continue it, or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def saved_recipe(run_dir: str | Path, family: str, recipe_class: type) -> Any:
    """The recipe a run being resumed was trained with (after checking the run holds a ``family`` model): the
    base that ``--config`` and overrides change, and what the model section must still equal."""
    from genchain.config import load_recipe

    require_family(run_dir, family)
    return load_recipe(recipe_class, Path(run_dir) / CONFIG)


def check_resume(run_dir: str | Path, data_dir: str | Path, same_model: bool) -> None:
    """What ``--resume`` must keep: the model (``same_model``: the saved and the new config agree) and the
    dataset, by the hash of its manifest. Raised before anything is written."""
    from genchain.data.manifest import manifest_hash
    from genchain.errors import ConfigError, InputError

    if not same_model:
        raise ConfigError("the model differs from the run being resumed; only train settings (e.g. max_iters) may "
                          "change on --resume")
    if read_card(run_dir).get("data", {}).get("manifest_sha256") != manifest_hash(data_dir):
        raise InputError(f"{data_dir} is not the dataset the run being resumed was trained on")


def data_provenance(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """What a card records of its training data's origin: the source paths and their licences."""
    sources = manifest.get("sources", [])
    return {"sources": [s.get("path") for s in sources],
            "licences": sorted({s["licence"] for s in sources if "licence" in s})}
