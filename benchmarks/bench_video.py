"""Issue 6, video: what a CPU budget of training buys the video VAE on Moving Fashion-MNIST, against baselines
measured in the same run, and how fast clips and latent walks are made.

1. ``genchain train video --data moving-fashion-mnist`` (the default 1,000 train / 200 test clips, synthesised in
   memory) for ``--cpu-minutes`` of CPU time (``max_cpu_seconds``: the process's CPU time on all its threads, which a
   busy shared machine inflates far less than wall time), 32x32 frames, 8-frame windows.
2. ``genchain eval video`` on 200 generated clips of 20 frames against the 200 test clips: frame FID (features of
   a CNN trained to name the garments in a frame; not Inception) and temporal consistency (SSIM / L1 between
   consecutive frames, flicker), for
   * the model's clips;
   * baseline "independent frames": the model's own frames, each taken from a different clip (frame quality
     unchanged, no temporal model) -- what stacking samples of an image model gives;
   * baseline "shuffled real": the real test clips with their frames shuffled (the real frames, no motion);
   * "real": the real test clips (the target), and the real train-vs-test frame FID (the floor).
   Ratios: the model's consecutive-frame L1 and flicker over each baseline's (below 1 is better) and over real.
3. Generation speed: frames/s of the video model; latent-walk frames/s (96 frames, GIF and MP4) from a small
   image VAE trained here on the digits for a few seconds (the walk's cost is decoding plus encoding the file).

    flock /tmp/bench/bench.lock .venv/bin/python benchmarks/bench_video.py [--cpu-minutes 6]
    .venv/bin/python benchmarks/bench_video.py --quick     # a smoke test: 20 CPU-seconds, nothing written
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from common import GENCHAIN, WORK, write_results

RUN = WORK / "video_run"
WALK_RUN = WORK / "video_walk_vae"
DIGITS = WORK / "video_digits"
TRAIN_OVERRIDES = ["image_size=32", "frames=8", "max_iters=3000", "eval_interval=500", "tensorboard=false"]


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return result.stdout


def train(cpu_seconds: float) -> tuple[list[str], dict]:
    shutil.rmtree(RUN, ignore_errors=True)
    cmd = GENCHAIN + ["train", "video", "--data", "moving-fashion-mnist", "--out", str(RUN),
                      *TRAIN_OVERRIDES, f"max_cpu_seconds={cpu_seconds}"]
    started = time.perf_counter()
    run(cmd)
    wall = time.perf_counter() - started
    points = [json.loads(line) for line in (RUN / "metrics.jsonl").read_text().splitlines()]
    rates = sorted(p["items_per_s"] for p in points if p["kind"] == "train" and p["iter"] > 20)
    card = json.loads((RUN / "card.json").read_text())
    return cmd, {"iters": card["iters"], "wall_seconds": round(wall, 1), "params": card["params"],
                 "clips_per_s_median": rates[len(rates) // 2] if rates else None,
                 "last_eval": card["last_eval"]}


def walk_speed() -> dict:
    """Frames/s of a 96-frame latent walk (GIF and MP4) from a small VAE trained here on the digits."""
    if not (WALK_RUN / "model.safetensors").is_file():
        shutil.rmtree(DIGITS, ignore_errors=True)
        run(GENCHAIN + ["data", "get", "digits", "-o", str(DIGITS / "raw")])
        run(GENCHAIN + ["data", "ingest", str(DIGITS / "raw"), "--kind", "image", "-o", str(DIGITS / "ds"),
                        "--label-from", "dirname"])
        run(GENCHAIN + ["train", "vae", "--data", str(DIGITS / "ds"), "--out", str(WALK_RUN), "max_iters=200",
                        "batch_size=64", "tensorboard=false", "eval_interval=1000", "grid_images=0"])
    from genchain.generate.video import generate_video

    out = {}
    for suffix in ("gif", "mp4"):
        started = time.perf_counter()
        result = generate_video(WALK_RUN, WORK / f"walk.{suffix}", frames=96, keyframes=4, size=256)
        seconds = time.perf_counter() - started
        out[suffix] = {"frames_per_s": 96 / seconds, "decode_frames_per_s": 96 / result.seconds,
                       "size": list(result.size)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-minutes", type=float, default=6.0)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("GENCHAIN_HOME", str(WORK / "genchain_home"))
    cpu_seconds = 20.0 if args.quick else args.cpu_minutes * 60
    clips = 20 if args.quick else args.clips

    train_cmd, training = train(cpu_seconds)
    eval_cmd = GENCHAIN + ["eval", "video", "--run", str(RUN), "--num", str(clips), "--json"]
    report = json.loads(run(eval_cmd))
    t = report["temporal"]
    model = t["generated"]
    ratios = {f"{metric}_model_over_{base}": model[metric] / t[base][metric]
              for metric in ("l1", "flicker") for base in ("independent_generated", "shuffled_real", "real")}
    ratios.update({f"ssim_model_over_{base}": model["ssim"] / t[base]["ssim"]
                   for base in ("independent_generated", "shuffled_real", "real")})
    walk = walk_speed()

    print(f"trained {training['iters']} iterations in {cpu_seconds:.0f} CPU-s ({training['wall_seconds']} s wall, "
          f"median {training['clips_per_s_median']} clips/s)")
    print(f"frame FID: model {report['frame_fid']['generated']:.2f}, real train vs test "
          f"{report['frame_fid']['real_train_vs_test']:.2f} (feature net top-2 accuracy "
          f"{report['features']['test_top2_accuracy']})")
    for name in ("generated", "independent_generated", "shuffled_real", "real"):
        print(f"  {name:<22} ssim {t[name]['ssim']:.3f}  l1 {t[name]['l1']:.4f}  flicker {t[name]['flicker']:.4f}")
    for key, value in ratios.items():
        print(f"  {key}: {value:.3f}")
    print(f"generation {report['generation_frames_per_s']:.0f} frames/s; latent walk "
          f"{walk['gif']['frames_per_s']:.0f} frames/s (GIF), {walk['mp4']['frames_per_s']:.0f} frames/s (MP4)")
    if args.quick:
        return
    write_results("video", {
        "claim": "video VAE on Moving Fashion-MNIST after a fixed CPU budget: frame FID and temporal consistency "
                 "vs independent frames / shuffled real frames / real clips; generation and latent-walk speed",
        "baselines": {"independent_generated": "the model's frames, each from a different generated clip",
                      "shuffled_real": "real test clips with their frames in random order",
                      "real": "real test clips"},
        "features": "CNN trained here to name both garments in a frame (not Inception-v3): "
                    + json.dumps({k: report["features"][k] for k in ("test_top2_accuracy", "steps")}),
        "cpu_seconds_budget": cpu_seconds, "image_size": 32, "frames": report["frames"], "clips": clips,
        "training": training, "frame_fid": report["frame_fid"], "temporal": t, "ratios": ratios,
        "generation_frames_per_s": report["generation_frames_per_s"], "latent_walk": walk,
        "commands": {"train": " ".join(train_cmd[2:]), "eval": " ".join(eval_cmd[2:])},
        "python": sys.version.split()[0],
    })


if __name__ == "__main__":
    main()
