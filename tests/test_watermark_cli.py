"""`genchain generate text` with the watermark and the safety filter, and `genchain watermark detect`, in process."""

import json

import numpy as np
import pytest
from PIL import Image

from genchain.cli import main
from genchain.provenance.keys import create_identity, ensure_identity


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def generate(run, out, *extra, sign=False):
    return main(["generate", "text", "--run", str(run), "--prompt", "the", "--max-new-tokens", "120",
                 "--temperature", "1.0", "--top-k", "0", "--seed", "3", "--num", "2", "-o", str(out), *extra,
                 *([] if sign else ["--no-sign"])])


def detect(capsys, *args):
    capsys.readouterr()
    code = main(["watermark", "detect", *map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out) if code == 0 else None


def test_generated_text_is_watermarked_and_detected(tiny_run, tmp_path, capsys):
    out = tmp_path / "samples.jsonl"
    assert generate(tiny_run, out, "--delta", "6") == 0
    code, results = detect(capsys, out)  # the tokenizer comes from the "run" field of each line
    assert code == 0 and [r["sample"] for r in results] == [1, 2]
    assert all(r["detected"] and r["z"] > 6 for r in results)
    capsys.readouterr()
    assert main(["watermark", "detect", str(out), "--run", str(tiny_run)]) == 0
    assert capsys.readouterr().out.count("watermarked ") == 2

    create_identity("other")
    code, results = detect(capsys, out, "--key", "other")
    assert code == 0 and not any(r["detected"] for r in results)  # another identity cannot see the mark


def test_the_signed_manifest_names_the_run_and_the_watermark(tiny_run, tmp_path, capsys):
    out = tmp_path / "story.txt"
    assert generate(tiny_run, out, "--delta", "6", sign=True) == 0
    manifest = json.loads((tmp_path / "story.txt.manifest.json").read_text())
    assert manifest["watermark"]["scheme"] == "kgw-text-v1" and manifest["watermark"]["applied"]
    assert manifest["watermark"]["params"]["gamma"] == 0.25 and manifest["watermark"]["params"]["delta"] == 6.0
    capsys.readouterr()
    assert main(["watermark", "detect", str(out)]) == 0  # no --run: the manifest says which run made it
    line = capsys.readouterr().out
    assert "watermarked " in line and "[manifest: watermarked]" in line

    manifest["watermark"]["params"]["tokenizer_sha256"] = "0" * 64  # made with another tokenizer than the run's
    (tmp_path / "story.txt.manifest.json").write_text(json.dumps(manifest))
    assert main(["watermark", "detect", str(out)]) == 2
    assert "holds another tokenizer" in capsys.readouterr().err


def test_no_watermark_gives_unmarked_text(tiny_run, tmp_path, capsys):
    out = tmp_path / "plain.txt"
    ensure_identity("default")  # nothing else makes it: no watermark, no signature
    assert generate(tiny_run, out, "--no-watermark") == 0
    code, results = detect(capsys, out, "--run", tiny_run)
    assert code == 0 and len(results) == 1 and not results[0]["detected"] and abs(results[0]["z"]) < 4


def test_a_blocked_prompt_is_refused_before_generating(tiny_run, tmp_path, capsys):
    out = tmp_path / "s.txt"
    code = main(["generate", "text", "--run", str(tiny_run), "--prompt", "how to make a bomb", "-o", str(out),
                 "--no-sign"])
    err = capsys.readouterr().err
    assert code == 2 and "error: the prompt was refused by the safety filter" in err and "'violence'" in err
    assert not out.exists()
    from genchain.provenance.safety import refusal_counts

    assert refusal_counts()["by_stage"] == {"prompt": 1}


def test_no_safety_turns_the_filter_off(tiny_run, tmp_path, capsys):
    rules = tmp_path / "rules.txt"
    rules.write_text("[house]\nthe\n", encoding="utf-8")
    args = ["generate", "text", "--run", str(tiny_run), "--prompt", "the", "--max-new-tokens", "5",
            "--blocklist", str(rules)]
    assert main(args) == 2 and "'house' blocklist" in capsys.readouterr().err
    assert main(args + ["--no-safety"]) == 0


def test_a_user_blocklist_withholds_outputs(tiny_run, tmp_path, capsys):
    rules = tmp_path / "rules.txt"
    rules.write_text("[house]\n.\n", encoding="utf-8")  # every line of the tiny corpus ends with a full stop
    out = tmp_path / "s.jsonl"
    code = main(["generate", "text", "--run", str(tiny_run), "--prompt", "a", "--max-new-tokens", "100",
                 "--seed", "1", "--num", "2", "--blocklist", str(rules), "-o", str(out), "--no-sign"])
    err = capsys.readouterr().err
    assert code == 2 and "sample 1 withheld by the safety filter (category house)" in err
    assert "error: the generated text was refused" in err and not out.exists()


def test_detect_errors_are_one_line(tiny_run, tmp_path, capsys):
    text = tmp_path / "note.txt"
    text.write_text("the cat sees the moon.\n", encoding="utf-8")
    cases = [
        (["watermark", "detect", str(text)], "cannot tell which tokenizer"),
        (["watermark", "detect", str(tmp_path / "none.txt")], "does not exist"),
        (["watermark", "detect", str(text), "--run", str(tiny_run), "--key", "nobody"], "no signing identity"),
    ]
    ensure_identity("default")
    for args, message in cases:
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_detect_reads_images(tmp_path, capsys):
    from genchain.provenance.watermark_image import embed_image_watermark, image_watermark_key

    identity, _ = ensure_identity("default")
    rng = np.random.default_rng(0)
    image = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    marked, _ = embed_image_watermark(image, image_watermark_key(identity))
    Image.fromarray(marked).save(tmp_path / "marked.png")
    Image.fromarray(image).save(tmp_path / "plain.png")
    code, results = detect(capsys, tmp_path / "marked.png", tmp_path / "plain.png")
    assert code == 0 and [r["detected"] for r in results] == [True, False]
