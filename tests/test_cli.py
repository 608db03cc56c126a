"""The command line as a user runs it: real subprocesses, exit codes, one-line errors."""

import subprocess
import sys

import pytest


def genchain(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "genchain", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", [["data", "prepare", "text"], ["train", "gpt"], ["generate", "text"],
                                     ["export", "hf"], ["import", "hf"], ["demo"]])
def test_every_command_has_help_with_examples(command):
    result = genchain(*command, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout


def test_top_level_help_lists_the_commands():
    out = genchain("--help").stdout
    for name in ("data", "train", "generate", "export", "import", "demo"):
        assert name in out


def test_end_to_end_prepare_train_generate(corpus_file, tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    assert genchain("data", "prepare", "text", corpus_file, "-o", data).returncode == 0
    result = genchain("train", "gpt", "--data", data, "--out", run, "n_layer=1", "n_head=2", "n_embd=16",
                      "block_size=16", "batch_size=4", "max_iters=5", "eval_iters=1", "tensorboard=false")
    assert result.returncode == 0, result.stderr
    assert "finished iteration 5" in result.stdout
    gen = genchain("generate", "text", "--run", run, "--prompt", "the", "--max-new-tokens", "20", "--seed", "3",
                   "--num", "2", "-o", tmp_path / "s.jsonl")
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.count("the") >= 2 and len((tmp_path / "s.jsonl").read_text().splitlines()) == 2
    streamed = genchain("generate", "text", "--run", run, "--prompt", "the", "--max-new-tokens", "20", "--seed",
                        "3", "--stream")
    assert streamed.returncode == 0 and streamed.stdout.startswith("the")


@pytest.mark.parametrize("args, message", [
    (["data", "prepare", "text", "/nonexistent.txt", "-o", "{tmp}/d"], "source /nonexistent.txt does not exist"),
    (["generate", "text", "--run", "{tmp}"], "not a genchain run dir"),
    (["train", "gpt", "--data", "{tmp}", "--out", "{tmp}/r"], "not a genchain dataset"),
    (["import", "hf", "{tmp}", "-o", "{tmp}/r"], "no config.json"),
])
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, args, message):
    result = genchain(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_bad_config_key_and_debug_traceback(char_dataset, tmp_path):
    result = genchain("train", "gpt", "--data", char_dataset, "--out", tmp_path / "r", "n_layers=2")
    assert result.returncode == 2 and "unknown config key 'n_layers'" in result.stderr
    debug = genchain("--debug", "train", "gpt", "--data", char_dataset, "--out", tmp_path / "r", "n_layers=2")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_generate_rejects_bad_sampling_values(tiny_run):
    result = genchain("generate", "text", "--run", tiny_run, "--temperature", "-1")
    assert result.returncode == 2 and "--temperature" in result.stderr


def test_stop_accepts_an_escaped_newline(tiny_run):
    result = genchain("generate", "text", "--run", tiny_run, "--prompt", "the", "--max-new-tokens", "200",
                      "--seed", "1", "--stop", "\\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1  # the sample ends at its first newline; print adds the only one
