"""Hugging Face ``transformers`` interop: our GPT <-> ``GPT2LMHeadModel`` directories.

The architectures are the same, so the mapping is by name, with one twist: GPT-2 stores its projections as
``Conv1D`` modules whose weights are the transpose of ``nn.Linear``'s. Models without biases export with
zero biases (GPT-2 always has them), which computes the same function.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genchain import rundir
from genchain.config import dump_yaml, to_dict
from genchain.data.tokenize import BPETokenizer, load_tokenizer
from genchain.errors import InputError, RunDirError
from genchain.fileio import atomic_path, atomic_write_text, sha256_file
from genchain.models.gpt import GPT, GPTConfig
from genchain.runtime import environment
from genchain.train.checkpoint import model_tensors, save_weights
from genchain.train.engine import TrainConfig
from genchain.train.lm import GPTRecipe, load_gpt

_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new"}


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    cfg = model.config
    state: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to transformer.wte.weight, which HF re-ties on load
        tensor = tensor.detach().float().cpu()
        if name.endswith(_TRANSPOSED):
            tensor = tensor.t()
        state[name] = tensor.contiguous()
    if not cfg.bias:
        for i in range(cfg.n_layer):
            p = f"transformer.h.{i}."
            for key, width in (("ln_1.bias", cfg.n_embd), ("ln_2.bias", cfg.n_embd),
                               ("attn.c_attn.bias", 3 * cfg.n_embd), ("attn.c_proj.bias", cfg.n_embd),
                               ("mlp.c_fc.bias", 4 * cfg.n_embd), ("mlp.c_proj.bias", cfg.n_embd)):
                state[p + key] = torch.zeros(width)
        state["transformer.ln_f.bias"] = torch.zeros(cfg.n_embd)
    return state


def export_hf(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``run_dir``'s best model as a ``transformers`` GPT-2 directory (config, weights, tokenizer)."""
    model, _ = load_gpt(run_dir)
    cfg = model.config
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunDirError(f"{out_dir} exists and is not empty; choose another -o")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(Path(run_dir) / rundir.TOKENIZER)
    hf_config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
        "activation_function": _ACTIVATIONS[cfg.activation], "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.attn_dropout,
        "initializer_range": 0.02, "tie_word_embeddings": True, "use_cache": True,
        "bos_token_id": tokenizer.eos_id, "eos_token_id": tokenizer.eos_id,
        "torch_dtype": "float32",
    }
    atomic_write_text(out_dir / "config.json", json.dumps(hf_config, indent=2) + "\n")
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(to_hf_state_dict(model), str(tmp), metadata={"format": "pt"})
    if isinstance(tokenizer, BPETokenizer):
        from transformers import PreTrainedTokenizerFast

        PreTrainedTokenizerFast(tokenizer_object=tokenizer.hf, eos_token="<|endoftext|>",
                                bos_token="<|endoftext|>").save_pretrained(out_dir)
    else:  # transformers has no character tokenizer class; ship ours beside the weights
        shutil.copyfile(Path(run_dir) / rundir.TOKENIZER, out_dir / "genchain_tokenizer.json")
    return out_dir


def import_hf(hf_dir: str | Path, out_dir: str | Path) -> Path:
    """Make a genchain run dir from a local ``transformers`` GPT-2 directory (no download)."""
    hf_dir = Path(hf_dir)
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise InputError(f"{hf_dir} is not a Hugging Face model directory (no config.json)")
    hf = json.loads(config_path.read_text(encoding="utf-8"))
    if hf.get("model_type") != "gpt2":
        raise InputError(f"{hf_dir} holds a {hf.get('model_type')!r} model; only GPT-2 checkpoints import")
    activation = {v: k for k, v in _ACTIVATIONS.items()}.get(hf.get("activation_function", "gelu_new"))
    if activation is None:
        raise InputError(f"unsupported activation {hf.get('activation_function')!r}; "
                         "supported: gelu, gelu_new")
    config = GPTConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", 1024), n_layer=hf["n_layer"],
        n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=hf.get("resid_pdrop", 0.0),
        attn_dropout=hf.get("attn_pdrop", 0.0), bias=True, layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
        activation=activation,
    )
    state = _read_hf_weights(hf_dir)
    model = GPT(config)
    ours = dict(model_tensors(model))
    with torch.no_grad():
        for name, tensor in ours.items():
            key = name if name in state else name.removeprefix("transformer.")
            if key not in state:
                raise InputError(f"{hf_dir} lacks weight {name}; the checkpoint is incomplete")
            value = state[key].float()
            if name.endswith(_TRANSPOSED):
                value = value.t()
            if value.shape != tensor.shape:
                raise InputError(f"{hf_dir}: {name} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}")
            tensor.copy_(value)
    run = rundir.prepare_new_run(out_dir, resume=False)
    recipe = GPTRecipe(model=config, train=TrainConfig())
    atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
    save_weights(run / rundir.BEST_WEIGHTS, model_tensors(model), {"iter": "0", "format": "genchain"})
    if (hf_dir / "tokenizer.json").is_file():
        shutil.copyfile(hf_dir / "tokenizer.json", run / rundir.TOKENIZER)
    elif (hf_dir / "genchain_tokenizer.json").is_file():
        shutil.copyfile(hf_dir / "genchain_tokenizer.json", run / rundir.TOKENIZER)
    rundir.write_card(run, {
        "family": "text", "model": "gpt", "task": "causal-lm", "params": sum(p.numel() for p in model.parameters()),
        "imported_from": {"dir": str(hf_dir.resolve()), "config_sha256": sha256_file(config_path)},
        "model_config": to_dict(config), "environment": environment(),
    })
    return run


def _read_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    if (hf_dir / "model.safetensors").is_file():
        return load_file(str(hf_dir / "model.safetensors"))
    if (hf_dir / "pytorch_model.bin").is_file():
        return torch.load(hf_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise InputError(f"{hf_dir} has neither model.safetensors nor pytorch_model.bin")
