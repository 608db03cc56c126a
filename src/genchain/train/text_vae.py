"""Training sentence VAEs: the recipe, KL annealing, the batches and evaluation, ``train_text_vae`` and the
test-split report ``evaluate_text_vae``.

Batches walk a shuffled permutation of the training sentences epoch by epoch, padded to the longest sentence
of the batch; the sampler (generator, permutation, position) is checkpointed, so ``--resume`` draws exactly the
batches an uninterrupted run would. :meth:`TextVAETask.batch_indices` is the one place that decides which
sentences a batch holds, so a distributed run can shard it by rank.

The KL weight is a function of the iteration (:func:`kl_weight_at`): the task computes it when it draws a batch
and passes it as the batch's third element, so ``model(*batch)`` trains with it and the model keeps no schedule.
Evaluation scores the validation split with fixed noise and reports the negative ELBO first (what "best" is
judged by), then reconstruction, KL, a small-k IWAE bound, perplexity, mutual information and active units.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, load_variant_recipe, to_dict
from genchain.data.dataset import Dataset
from genchain.data.manifest import manifest_hash
from genchain.data.tokenize import load_tokenizer, save_tokenizer
from genchain.errors import ConfigError, InputError
from genchain.eval.text_vae import score_sentences
from genchain.fileio import atomic_write_json, atomic_write_text
from genchain.models.registry import create_model, get_family_entry
from genchain.models.text_vae import TextVAE, TextVAEConfig, variant_defaults
from genchain.runtime import environment, seed_everything
from genchain.train import distributed
from genchain.train.checkpoint import load_weights
from genchain.train.engine import FitResult, TrainConfig, fit
from genchain.train.sampling import EpochSampler
from genchain.train.text_vae_data import SentenceCodec, SentenceData, load_sentence_data

FAMILY = "text-vae"
Anneal = Literal["logistic", "linear", "cyclical", "none"]


@dataclass(frozen=True)
class TextVAESettings:
    """What is specific to a sentence VAE run, beside the model's shape and the optimiser."""

    model: str = "text-vae"  # registry name: text-vae, text-vae-transformer, text-lm-gru, *-tiny
    tokenizer: Literal["bpe", "char"] = "bpe"  # char suits Chinese
    bpe_vocab: int = 2048
    max_len: int = 48  # tokens per sentence incl. EOS; longer sentences are dropped, not cut
    normalize_whitespace: bool = True
    val_fraction: float = 0.05  # carved out of train by text hash when the dataset has no validation split
    test_fraction: float = 0.05  # likewise for test
    kl_anneal: Anneal = "cyclical"
    kl_anneal_iters: int = 500  # logistic / linear: iterations to reach 1; cyclical: one cycle
    kl_cycle_ratio: float = 0.5  # cyclical: share of each cycle spent rising 0 -> 1 (Fu et al.'s R)
    eval_sentences: int = 1000  # validation sentences scored at each evaluation (the first ones)
    eval_k: int = 10  # importance samples of the validation IWAE bound
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        if self.max_len < 2:
            raise ValueError(f"max_len counts EOS and must be >= 2, got {self.max_len}")
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction must be in (0, 1), test_fraction in [0, 1), their sum below 1")
        if self.kl_anneal_iters < 1 or not 0 < self.kl_cycle_ratio <= 1:
            raise ValueError("kl_anneal_iters must be >= 1 and kl_cycle_ratio in (0, 1]")
        if self.eval_sentences < 1 or self.eval_k < 1 or self.eval_batch_size < 1:
            raise ValueError("eval_sentences, eval_k and eval_batch_size must be >= 1")


@dataclass(frozen=True)
class TextVAERecipe:
    """``genchain train text-vae``'s config: ``model``, ``train`` and ``vae`` sections (flat keys work too)."""

    model: TextVAEConfig = field(default_factory=TextVAEConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=64, learning_rate=1e-3, min_lr=1e-4,
                                                                   weight_decay=0.0, eval_interval=500,
                                                                   warmup_iters=100, grad_clip=5.0))
    vae: TextVAESettings = field(default_factory=TextVAESettings)


def kl_weight_at(it: int, kind: str, iters: int, ratio: float = 0.5) -> float:
    """The KL weight at iteration ``it`` (0-based).

    * ``logistic`` (Bowman et al. 2016): 1 / (1 + exp(-10 (it / iters - 1/2))), 0.5 at iters / 2;
    * ``linear``: it / iters, then 1;
    * ``cyclical`` (Fu et al. 2019, "Cyclical Annealing Schedule"): every cycle of ``iters`` rises linearly from 0
      to 1 over the first ``ratio`` of it and stays at 1 for the rest, and the cycles repeat for the whole run
      (a run stopped by a time budget has no known length to spread a fixed number of cycles over);
    * ``none``: 1 throughout.
    """
    if kind == "logistic":
        return 1.0 / (1.0 + math.exp(-10.0 * (it / iters - 0.5)))
    if kind == "linear":
        return min(1.0, it / iters)
    if kind == "cyclical":
        return min(1.0, (it % iters) / iters / ratio)
    if kind == "none":
        return 1.0
    raise ConfigError(f"unknown kl_anneal {kind!r}; use logistic, linear, cyclical or none")


class TextVAETask:
    """Shuffled epochs of padded sentences with the KL weight of their iteration; evaluation on validation."""

    def __init__(self, data: SentenceData, recipe: TextVAERecipe, device: torch.device):
        self.train = data.splits["train"]
        self.val = data.splits["val"]
        self.batch_size = recipe.train.batch_size
        self.accumulation = recipe.train.gradient_accumulation_steps
        self.settings = recipe.vae
        self.device = device
        self.seed = recipe.train.seed
        # shuffled epochs, each rank taking its slice of every global batch (see genchain.train.sampling)
        self.sampler = EpochSampler(len(self.train), self.batch_size, self.seed, "sentences",
                                    hint="lower batch_size or raise max_len")
        self.batches = 0  # micro-batches drawn: iteration = batches // accumulation
        self._tokens_last = 0

    def iteration(self) -> int:
        return self.batches // self.accumulation

    def kl_weight(self) -> float:
        s = self.settings
        return kl_weight_at(self.iteration(), s.kl_anneal, s.kl_anneal_iters, s.kl_cycle_ratio)

    def batch_indices(self) -> torch.Tensor:
        """This rank's training rows of the next batch."""
        return self.sampler.next_indices()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        tokens, lengths = self.train.batch(self.batch_indices())
        weight = self.kl_weight()
        self.batches += 1
        self._tokens_last = int(lengths.sum())
        return tokens.to(self.device, non_blocking=True), lengths, weight

    def items_per_batch(self) -> int:
        return self._tokens_last  # tokens incl. EOS (throughput is in tokens/s)

    def flops_per_item(self, model: nn.Module) -> float:
        return model.flops_per_token() if isinstance(model, TextVAE) else 0.0

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        assert isinstance(model, TextVAE)
        n = min(len(self.val), self.settings.eval_sentences)
        scores = score_sentences(model, self.val.tokens[:n], self.val.lengths[:n], k=self.settings.eval_k,
                                 batch_size=self.settings.eval_batch_size, seed=self.seed + 1)
        return {"val_nll": scores["nll_elbo"], "val_rec": scores["rec"], "val_kl": scores["kl"],
                "val_nll_iwae": scores["nll_iwae"], "val_ppl": scores["ppl_elbo"], "val_mi": scores["mi"],
                "val_active_units": float(scores["active_units"]), "kl_weight": self.kl_weight()}

    def state_dict(self) -> dict[str, Any]:
        return {**self.sampler.state_dict(), "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self.batches = int(state["batches"])


# ----------------------------------------------------------------------------------------------- recipes


def resolve_recipe(config_file: str | Path | None, overrides: list[str] | None,
                   base: dict[str, Any] | None = None) -> TextVAERecipe:
    """The recipe with the chosen variant's defaults (``model=text-vae-tiny``) under the file and the overrides."""
    return load_variant_recipe(TextVAERecipe, config_file, overrides, base, variant_defaults=variant_defaults,
                               model_name=lambda r: get_family_entry(r.vae.model, FAMILY, "train text-vae").name)


def load_text_vae(run_dir: str | Path, weights: str = rundir.BEST_WEIGHTS
                  ) -> tuple[TextVAE, SentenceCodec, TextVAERecipe, dict[str, Any]]:
    """The model of a text-vae run in fp32 on the CPU (eval mode), its codec, recipe and card."""
    card = rundir.require_family(run_dir, FAMILY)
    recipe = load_recipe(TextVAERecipe, Path(run_dir) / rundir.CONFIG)
    model = create_model(card.get("model", recipe.vae.model), **to_dict(recipe.model))
    assert isinstance(model, TextVAE)
    load_weights(model, Path(run_dir) / weights)
    codec = SentenceCodec(load_tokenizer(Path(run_dir) / rundir.TOKENIZER))
    if codec.vocab_size != model.config.vocab_size:
        raise InputError(f"{run_dir}/{rundir.TOKENIZER} has {codec.vocab_size - 4} tokens but the model expects "
                         f"{model.config.vocab_size - 4}; the run dir is inconsistent")
    return model.eval(), codec, recipe, card


def _data_for(data_dir: str | Path, recipe: TextVAERecipe, tokenizer=None) -> SentenceData:
    s = recipe.vae
    return load_sentence_data(data_dir, max_len=s.max_len, normalize_whitespace=s.normalize_whitespace,
                              val_fraction=s.val_fraction, test_fraction=s.test_fraction, tokenizer=tokenizer,
                              tokenizer_kind=s.tokenizer, bpe_vocab=s.bpe_vocab)


def train_text_vae(
    data_dir: str | Path,
    out_dir: str | Path,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
) -> FitResult:
    """Train (or resume) a sentence VAE or its LM baseline on a text dataset; everything lands in ``out_dir``."""
    out_dir = Path(out_dir)
    place = distributed.init()  # under torchrun: join the group first, as only rank 0 writes the run dir
    resume = distributed.should_resume(resume, (out_dir / rundir.STATE).is_file())
    # 1. resolve the config: the resumed run's, then the file, then the overrides
    saved: TextVAERecipe | None = None
    base: dict[str, Any] = {}
    if resume:
        saved = rundir.saved_recipe(out_dir, FAMILY, TextVAERecipe)
        base = to_dict(saved)
    recipe = resolve_recipe(config_file, overrides, base)

    # 2. read the data (a resumed run keeps its tokenizer) and complete the model's shape from it
    if saved is not None and (saved.vae.tokenizer, saved.vae.bpe_vocab, saved.vae.max_len) != (
            recipe.vae.tokenizer, recipe.vae.bpe_vocab, recipe.vae.max_len):
        raise ConfigError("tokenizer, bpe_vocab and max_len cannot change on --resume")
    tokenizer = load_tokenizer(out_dir / rundir.TOKENIZER) if resume else None
    data = _data_for(data_dir, recipe, tokenizer)
    try:
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(
            recipe.model, vocab_size=data.codec.vocab_size, max_positions=recipe.vae.max_len))
        seed_everything(recipe.train.seed)  # the weight init draws from the global generator
        model = create_model(recipe.vae.model, **to_dict(recipe.model))
    except ValueError as err:
        raise ConfigError(f"invalid model config: {err}") from err

    # 3. check everything that can be checked before anything is written
    if saved is not None:
        rundir.check_resume(out_dir, data_dir, saved.model == recipe.model and saved.vae.model == recipe.vae.model)
    run = rundir.prepare_new_run(out_dir, resume)

    # 4. record the run (rank 0), then train
    if place.is_main:
        atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
        if not resume:
            save_tokenizer(data.codec.tokenizer, run / rundir.TOKENIZER)
            rundir.write_card(run, {
                "family": FAMILY, "model": recipe.vae.model,
                "task": "sentence-vae" if model.latent_dim else "causal-lm",
                "params": sum(p.numel() for p in model.parameters()),
                "latent_dim": model.latent_dim, "decoder": recipe.model.decoder,
                "tokenizer": {"kind": recipe.vae.tokenizer, "vocab_size": data.codec.tokenizer.vocab_size,
                              "specials": "PAD, BOS, EOS, UNK appended as the last four ids"},
                "data": {"dir": str(Path(data_dir).resolve()), "manifest_sha256": manifest_hash(data_dir),
                         "splits": data.counts, **rundir.data_provenance(Dataset(data_dir).manifest)},
                "environment": environment(),
            })
    distributed.barrier()

    def task_factory(device: torch.device) -> TextVAETask:
        return TextVAETask(data, recipe, device)

    return fit(model, task_factory, recipe.train, run, resume=resume)


def evaluate_text_vae(run_dir: str | Path, split: str = "test", k: int = 100, data_dir: str | Path | None = None,
                      max_sentences: int = 0, batch_size: int = 64, seed: int = 0,
                      write: bool = True) -> dict[str, Any]:
    """The test-split report of a run (see :mod:`genchain.eval.text_vae`), written to ``RUN_DIR/eval_SPLIT.json``.

    Args:
        run_dir: a text-vae run.
        split: train, val or test, as the run defined them (a derived split is re-derived by the same hash).
        k: importance samples per sentence for the IWAE bound (100 is the usual report).
        data_dir: the dataset; default the one the card names.
        max_sentences: score only the first this many sentences; 0 means all.
        batch_size: sentences per pass (each decoded k times).
        seed: the noise of the one-sample ELBO, the IWAE samples and the MI estimate.
        write: also write the report into the run dir.
    """
    model, codec, recipe, card = load_text_vae(run_dir)
    data_dir = data_dir or card.get("data", {}).get("dir")
    if not data_dir:
        raise InputError(f"{run_dir}'s card names no dataset; pass data_dir")
    if split not in ("train", "val", "test"):
        raise InputError(f"split must be train, val or test, got {split!r}")
    data = _data_for(data_dir, recipe, codec.tokenizer)
    sentences = data.splits[split]
    if len(sentences) == 0:
        raise InputError(f"the {split} split of {data_dir} holds no sentence of at most {recipe.vae.max_len} tokens")
    n = len(sentences) if max_sentences <= 0 else min(max_sentences, len(sentences))
    report = score_sentences(model, sentences.tokens[:n], sentences.lengths[:n], k=k, batch_size=batch_size,
                             seed=seed, progress=True)
    report = {"run": str(run_dir), "model": card.get("model"), "split": split,
              "split_from": data.counts[split]["from"], "params": card.get("params"), **report}
    if write:
        atomic_write_json(Path(run_dir) / f"eval_{split}.json", report)
    return report
