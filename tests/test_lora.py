"""LoRA fine-tuning (`train gpt --init HF_DIR --lora`), its run dir, reloads, and the dequantised-model cache.

Everything runs on a real tiny Llama (2 layers, 32 wide) with a BPE tokenizer trained here and a chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genchain import rundir
from genchain.cli import main
from genchain.generate.hf_backend import HFBackend, load_backend, load_hf_dir, load_lora_run, load_text_generator
from genchain.generate.smollm2 import SOURCE_NOTE, dequantised_cache
from genchain.generate.text import SamplingConfig
from genchain.train.engine import TrainConfig, fit
from genchain.train.lora import LoraSettings, LoraTask, LoraTrainee, load_adapter, lora_model
from genchain.train.lora_data import IGNORE, Example, chat_example, encode, encode_all
from tiny_llama import make_tiny_llama

ALL = "q_proj+k_proj+v_proj+o_proj+gate_proj+up_proj+down_proj"
PAIRS = [(f"Write a slogan for solar lamp {i}.", f"Sunlight in every room, lamp {i}!") for i in range(12)]


def make_copy_llama(path: Path) -> Path:
    """The tiny Llama with merges learnt from PAIRS, and weights large enough that LoRA's effect shows."""
    return make_tiny_llama(path, [f"{p} {c}" for p, c in PAIRS] * 5, vocab_size=160, initializer_range=0.2)


def write_pairs(path: Path) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in PAIRS), encoding="utf-8")
    return path


TRAIN = ["max_iters=30", "eval_interval=15", "learning_rate=1e-2", "min_lr=1e-3", "warmup_iters=2", "batch_size=4",
         "dtype=fp32", "log_interval=1", "seed=3"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return make_copy_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def lora_run(base_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lora")
    run = tmp / "run"
    code = main(["train", "gpt", "--init", str(base_dir), "--data", str(write_pairs(tmp / "pairs.jsonl")),
                 "--out", str(run), "--lora", "r=4,alpha=8,dropout=0", "--merge", *TRAIN])
    assert code == 0
    return run


def test_prompt_masking_known_answer(base_dir):
    _, tok = load_hf_dir(base_dir)
    example = chat_example(tok, "sys", "Write a slogan.", "Sun!")
    # the prompt is what the copy backend renders at inference; the completion ends at the end-of-turn token
    assert example.prompt == HFBackend(*load_hf_dir(base_dir), name="x").render("sys", "Write a slogan.")
    assert example.completion == "Sun!</s>"
    enc = encode(example, tok, max_len=64, where="t")
    n_prompt = len(tok(example.prompt, add_special_tokens=False).input_ids)
    completion = tok("Sun!</s>", add_special_tokens=False).input_ids
    assert enc.labels == [IGNORE] * n_prompt + completion
    assert enc.ids == tok(example.prompt, add_special_tokens=False).input_ids + completion
    # a completion running past max_len is cut, never the prompt
    short = encode(example, tok, max_len=n_prompt + 1, where="t")
    assert short.labels == [IGNORE] * n_prompt + completion[:1]


def test_loss_counts_only_completion_tokens(base_dir):
    model, tok = load_hf_dir(base_dir)
    trainee = LoraTrainee(lora_model(model, LoraSettings(r=2, dropout=0.0)))
    enc = encode(Example("Write a slogan for solar lamp 3.", "Sunlight!"), tok, 64, "t")
    ids, labels = torch.tensor([enc.ids]), torch.tensor([enc.labels])
    loss = trainee(ids, torch.ones_like(ids), labels).loss
    logp = torch.log_softmax(trainee.peft_model(input_ids=ids).logits[0, :-1].float(), -1)
    targets = labels[0, 1:]
    keep = targets != IGNORE
    expected = -logp[keep].gather(1, targets[keep][:, None]).mean()
    assert int(keep.sum()) == len(tok("Sunlight!", add_special_tokens=False).input_ids)
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.slow
def test_training_changes_only_adapters_and_reload_is_exact(base_dir, tmp_path):
    model, tok = load_hf_dir(base_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(0)
    peft_model = lora_model(model, LoraSettings(r=4, alpha=8, dropout=0.0, targets=ALL))
    trainee = LoraTrainee(peft_model)
    data = encode_all([{"prompt": p, "completion": c} for p, c in PAIRS], tok, 64, "train")
    cfg = TrainConfig(batch_size=4, max_iters=30, learning_rate=3e-2, min_lr=3e-3, warmup_iters=2, eval_interval=30,
                      eval_iters=3, log_interval=1, dtype="fp32", tensorboard=False, weight_decay=0.0)
    with torch.no_grad():
        start = LoraTask(data, data, 4, 3, 0, tok.pad_token_id, torch.device("cpu")).evaluate(trainee)["val_loss"]
    rundir.write_card(rundir.prepare_new_run(tmp_path / "run", False), {"family": "text-lora"})
    result = fit(trainee, lambda d: LoraTask(data, data, 4, 3, 0, tok.pad_token_id, d), cfg, tmp_path / "run")
    assert result.last_metrics["val_loss"] < start - 1.0  # it learns the pairs
    for name, p in peft_model.named_parameters():
        if "lora_" not in name:  # every base weight bit-identical, only adapters moved
            plain = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
            assert torch.equal(p, before[plain]), name
    assert all("lora_" in k for k in trainee.state_dict())  # checkpoints hold the adapters alone
    peft_model.eval()
    ids = torch.tensor([data[0].ids])
    with torch.no_grad():
        trained = peft_model(input_ids=ids).logits
        peft_model.save_pretrained(tmp_path / "adapter")
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(load_hf_dir(base_dir)[0], tmp_path / "adapter").eval()
        assert torch.equal(reloaded(input_ids=ids).logits, trained)
        assert not torch.allclose(load_hf_dir(base_dir)[0](input_ids=ids).logits, trained)


def test_cli_run_dir_merge_and_backends(lora_run, base_dir):
    card = json.loads((lora_run / "card.json").read_text())
    assert card["family"] == "text-lora" and card["base"]["kind"] == "hf_dir" and card["merged"] == "merged"
    assert card["base"]["weights_sha256"] and card["trainable_params"] == 2 * 2 * (32 * 4 + 4 * 32)
    assert (lora_run / "adapter" / "adapter_config.json").is_file() and (lora_run / "config.yaml").is_file()
    lines = [json.loads(line) for line in (lora_run / "metrics.jsonl").read_text().splitlines()]
    losses = [p["loss"] for p in lines if p["kind"] == "train"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # training loss falls
    # merged dir and base + adapter give the same logits
    merged, _ = load_lora_run(lora_run)
    unmerged = load_adapter(load_hf_dir(base_dir)[0], lora_run).eval()
    ids = torch.tensor([[5, 9, 13, 17, 21]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, unmerged(input_ids=ids).logits, atol=1e-5)
    # genchain copy and generate text load the run
    backend = load_backend(str(lora_run))
    assert isinstance(backend, HFBackend)
    from genchain.apps.copywriting import Brief, write_copy

    result = write_copy(Brief("solar lamp", ("sunlight",)), backend, num=3, seed=1, embed=lambda t: np.eye(len(t)))
    assert len(result.ranked) + len(result.rejected) == 3
    gen = load_text_generator(lora_run)
    cfg = SamplingConfig(max_new_tokens=6, temperature=0.8, seed=4)
    first = gen.generate("Write a slogan", 2, cfg)
    assert len(first) == 2 and first == gen.generate("Write a slogan", 2, cfg)
    assert "".join(gen.stream("Write a slogan", SamplingConfig(max_new_tokens=6, temperature=0))) == \
        gen.generate("Write a slogan", 1, SamplingConfig(max_new_tokens=6, temperature=0))[0]


def test_resume_continues_the_run(lora_run, base_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    data = write_pairs(tmp_path / "pairs.jsonl")
    args = ["train", "gpt", "--init", str(base_dir), "--data", str(data), "--out", str(run), "--lora", "r=4"]
    assert main([*args[:-1], "r=2", "--resume", *TRAIN[1:], "max_iters=36"]) == 2  # the saved run has r=4
    assert main([*args, "--resume", *TRAIN[1:], "max_iters=36"]) == 0  # alpha and dropout: the saved ones
    card = json.loads((run / "card.json").read_text())
    assert card["iters"] == 36 and card["merged"] is None and not (run / "merged").exists()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [p["iter"] for p in lines if p["kind"] == "train"] == list(range(1, 37))


def test_copy_command_on_lora_run(lora_run, tmp_path, capsys):
    out = tmp_path / "copy"
    code = main(["copy", "--product", "solar lamp", "--backend", str(lora_run), "--num", "3", "--out", str(out),
                 "--kind", "social-post"])
    assert code == 0
    assert json.loads((out / "copy.json").read_text())["backend"] == str(lora_run)


@pytest.mark.parametrize("extra, message", [
    (["--lora", "r=0"], "rank r must be at least 1"),
    (["--lora", "r=4,rank=3"], "unknown config key lora.rank"),
    (["--lora", "r=4,targets=nope_proj"], "do not name layers"),
    ([], "add\n--lora r=8|by adding --lora r=8"),
])
def test_bad_settings_exit_2(base_dir, tmp_path, capsys, extra, message):
    code = main(["train", "gpt", "--init", str(base_dir), "--data", str(write_pairs(tmp_path / "p.jsonl")),
                 "--out", str(tmp_path / "run"), *extra, "max_iters=1"])
    err = capsys.readouterr().err
    assert code == 2 and any(m in err for m in message.split("|")), err
    assert not (tmp_path / "run" / "card.json").exists()  # nothing written


def test_bad_data_exit_2(base_dir, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    args = ["train", "gpt", "--init", str(base_dir), "--out", str(tmp_path / "run"), "--lora", "r=2"]
    assert main([*args, "--data", str(empty)]) == 2
    assert "holds no examples" in capsys.readouterr().err
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"prompt": "lamp " * 40, "completion": "ok"}) + "\n" for _ in range(3)))
    assert main([*args, "--data", str(long), "max_len=32"]) == 2
    assert "the prompt is" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "x"}\n{"title": "y"}\n', encoding="utf-8")
    assert main([*args, "--data", str(bad)]) == 2
    assert "none of the keys" in capsys.readouterr().err
    assert main([*args, "--data", str(empty), "max_len=4096"]) == 2  # empty data is found before the model loads
    assert not (tmp_path / "run").exists()


def test_dequantised_cache_builds_once_and_keys_on_content(base_dir, tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(b"pretend quantised weights v1")
    calls = []

    def load():
        calls.append(1)
        return load_hf_dir(base_dir)

    first = dequantised_cache(source, load, cache=tmp_path / "cache")
    assert dequantised_cache(source, load, cache=tmp_path / "cache") == first and len(calls) == 1
    assert (first / SOURCE_NOTE).is_file() and (first / "config.json").is_file()
    model, _ = load_hf_dir(first)
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, load_hf_dir(base_dir)[0](input_ids=ids).logits)
    source.write_bytes(b"pretend quantised weights v2")  # a new file is never served the old model
    assert dequantised_cache(source, load, cache=tmp_path / "cache") != first and len(calls) == 2

    def broken():
        raise RuntimeError("interrupted")

    source.write_bytes(b"v3")
    with pytest.raises(RuntimeError):
        dequantised_cache(source, broken, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # nothing half-made left behind
