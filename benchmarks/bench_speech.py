"""Issue 6, claim 3: can a word classifier hear the digit that the speech model was asked to say?

1. ``genchain train speech --data speech-digits`` (240 espeak-ng clips, 24 voice settings per digit, 20% of
   the recordings held out) for a fixed CPU-time budget (``max_cpu_seconds``: CPU time of the training process,
   what "the same work" means on a shared machine), the default ``speech-vae``.
2. :func:`genchain.eval.speech.evaluate_run`: a small CNN judge trained on the run's training clips, scored on
   the held-out real clips, the same clips after a Griffin-Lim round trip (the vocoder's ceiling), ``--per-label``
   generated clips per digit (sampled, inverted by Griffin-Lim, analysed again: the waveform is judged) and two
   baselines measured in the same run: each digit's mean training spectrogram (inverted the same way) and
   white noise (chance). Ratios are printed against the held-out real clips and against the class-mean baseline.
3. Generation speed: ``say`` of all ten digits, repeated, in seconds of audio per second of wall time (model
   loaded once; Griffin-Lim 64 iterations, one thread of the machine's).

    flock /tmp/bench/bench.lock .venv/bin/python benchmarks/bench_speech.py [--cpu-seconds 420] [--per-label 20]
    ... --quick       # a smoke test: 20 CPU seconds, 2 clips per label, results not written
    ... --speed-only  # re-measure generation speed on the last run, update results/speech.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time

from common import GENCHAIN, WORK, median, write_results

RUN = WORK / "speech_run"


def train(cpu_seconds: float) -> tuple[list[str], float]:
    if RUN.exists():
        shutil.rmtree(RUN)
    cmd = GENCHAIN + ["train", "speech", "--data", "speech-digits", "--out", str(RUN),
                      f"max_cpu_seconds={cpu_seconds}", "max_iters=1000000", "eval_interval=500",
                      "tensorboard=false"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return cmd, time.perf_counter() - start


def training_rate() -> tuple[float, int]:
    """Median clips/s over the engine's logging windows, and the last iteration reached."""
    rows = [json.loads(line) for line in (RUN / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r.get("kind") == "train"]
    return median([r["items_per_s"] for r in train_rows if r.get("items_per_s")]), int(train_rows[-1]["iter"])


def generation_speed(repeats: int) -> dict[str, float]:
    from genchain.generate.speech import join, sample_features, to_waveforms
    from genchain.train.speech import load_speech

    speech = load_speech(RUN)
    labels = list(range(len(speech.label_names)))
    audio_seconds, start = 0.0, time.perf_counter()
    for seed in range(repeats):
        waves = to_waveforms(sample_features(speech.model, labels, seed), speech.features, 64, seed)
        audio_seconds += len(join(waves, speech.features.sample_rate, 120.0)) / speech.features.sample_rate
    wall = time.perf_counter() - start
    return {"audio_seconds": round(audio_seconds, 2), "wall_seconds": round(wall, 2),
            "audio_seconds_per_second": round(audio_seconds / wall, 2), "words": repeats * len(labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-seconds", type=float, default=420.0)
    parser.add_argument("--per-label", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--speed-only", action="store_true",
                        help="re-measure generation speed on the existing run and update results/speech.json")
    args = parser.parse_args()
    if args.speed_only:
        from common import RESULTS

        speed = generation_speed(5)
        print(f"generation: {speed['audio_seconds_per_second']:.1f} s of audio per second ({speed['words']} words)")
        results = json.loads((RESULTS / "speech.json").read_text())
        results["generation"] = {**speed, "measured": "separately, with --speed-only"}
        (RESULTS / "speech.json").write_text(json.dumps(results, indent=2) + "\n")
        return
    cpu, per_label = (20.0, 2) if args.quick else (args.cpu_seconds, args.per_label)

    from genchain.eval.speech import evaluate_run

    cmd, train_wall = train(cpu)
    clips_per_s, iters = training_rate()
    report = evaluate_run(RUN, per_label=per_label)
    speed = generation_speed(1 if args.quick else 5)

    names = ("held_out", "held_out_griffin_lim", "generated", "baseline_class_mean", "baseline_noise")
    acc = {name: report[name]["accuracy"] for name in names}
    print(f"trained {iters} iterations in {cpu:.0f} CPU s ({train_wall:.0f} s wall), {clips_per_s:.1f} clips/s")
    for name in names:
        print(f"  {name:22s} accuracy {acc[name]:.3f}  ({report[name]['clips']} clips)")
    print(f"  chance                 {report['chance']:.3f}")
    ratios = {"generated_vs_held_out_real": round(acc["generated"] / max(acc["held_out"], 1e-9), 3),
              "generated_vs_griffin_lim_ceiling": round(acc["generated"] / max(acc["held_out_griffin_lim"], 1e-9), 3),
              "generated_vs_class_mean_baseline": round(acc["generated"] / max(acc["baseline_class_mean"], 1e-9), 3),
              "generated_vs_noise_baseline": round(acc["generated"] / max(acc["baseline_noise"], 1e-9), 3)}
    for name, value in ratios.items():
        print(f"  {name}: {value:.2f}x")
    print(f"generation: {speed['audio_seconds_per_second']:.1f} s of audio per second ({speed['words']} words)")
    if args.quick:
        return
    write_results("speech", {
        "claim": "digit-classifier accuracy on generated digits vs held-out real clips and baselines (issue 6)",
        "command": " ".join(cmd[2:]), "cpu_seconds": cpu, "train_wall_seconds": round(train_wall, 1),
        "iterations": iters, "train_clips_per_s": round(clips_per_s, 1),
        "accuracy": acc, "chance": report["chance"], "ratios": ratios,
        "per_label": {name: report[name]["per_label"] for name in names},
        "clips": {name: report[name]["clips"] for name in names}, "classifier": report["classifier"],
        "griffin_lim_iters": report["griffin_lim_iters"], "generation": speed,
        "note": "judge: a CNN trained on the run's training clips (espeak-ng voices); generated audio is judged "
                "after Griffin-Lim and re-analysis, so the waveform is what is scored",
    })


if __name__ == "__main__":
    main()
