"""Claim 2 of issue 4: GAN quality, FID after the same CPU wall-time budget, vs pytorch/examples' DCGAN.

FID is measured with genchain's default features (the Fashion-MNIST classifier that ``genchain eval image`` trains
once and caches), 28 px, generated samples against the test split (10,000 images), with the floor (the test split
against as many train images) that ``evaluate_run`` reports. Lower is better.

* genchain: ``genchain train gan --config configs/gan_fashion.yaml max_seconds=BUDGET`` as a subprocess (28 px,
  7x7 start, non-saturating loss, EMA generator; its periodic sliced-Wasserstein evaluations run inside the
  budget), then ``genchain.eval.image.evaluate_run`` on the run (its best-on-SWD EMA weights).
* the reference: pytorch/examples ``dcgan/main.py``, read at run time from $PYTORCH_EXAMPLES_DIR and executed the
  way ``bench_gan_throughput.py`` does (its helpers are imported from there): the script's own setup (argument
  parser with ``--dataset mnist --imageSize 64``, seed, ``weights_init``, ``Generator``, ``Discriminator``,
  ``criterion``, optimizers) and its inner loop body verbatim, fp32, on Fashion-MNIST's train split resized to 64
  px (bilinear, as ``transforms.Resize(64)``) in its normalisation, reshuffled every epoch, for the same budget of
  wall time (only the loop body is clocked: batch preparation is free, which flatters the reference). Its samples
  are drawn as its script draws them (``netG(noise)`` in batches of 64, the module left in train mode as main.py
  leaves it), mapped to uint8 and downsampled to 28 px with antialiased bilinear interpolation
  (``F.interpolate(..., mode="bilinear", antialias=True)``, i.e. PIL-style), then scored with the same feature
  network and ``compare_features`` as ours.

    PYTORCH_EXAMPLES_DIR=/path/to/examples python benchmarks/bench_gan_quality.py [--minutes 15] [--num 10000]
    ... --quick        # a smoke test: 6 s per side, 500 samples, results not written
    ... --only reference   # re-measure the reference alone, keeping genchain's side of results/gan_quality.json

``--only reference`` exists because one 15-minute side can be slowed by other work on a shared machine: each
side's iteration rate is recorded, and a side that ran on a busy machine is measured again rather than kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench_gan_throughput import BATCH, MAIN, ensure_data, split_reference
from common import GENCHAIN, ROOT, WORK, examples_source, stream_lines, write_results

DATA = WORK / "fashion_mnist"
CONFIG = ROOT / "configs" / "gan_fashion.yaml"
OUR_RUN = WORK / "gan_quality_run"
PEER_SAMPLES = WORK / "gan_quality_peer.pt"
PEER_INFO = WORK / "gan_quality_peer.json"


# ------------------------------------------------------------------------------------------------ the reference
def peer_worker(seconds: float, num: int) -> None:
    """Train dcgan/main.py's own models with its own loop body for ``seconds``; save ``num`` 28 px uint8 samples."""
    from genchain.train.image_data import load_images, to_uint8

    source, origin = examples_source(MAIN)
    setup, step, dropped = split_reference(source)
    printed: list[str] = []
    namespace: dict = {"__name__": "dcgan_main", "print": lambda *a, **k: printed.append(" ".join(map(str, a))),
                       "nc": 1}
    argv = sys.argv
    sys.argv = [MAIN, "--dataset", "mnist", "--dataroot", str(DATA), "--manualSeed", "1", "--niter", "1000",
                "--outf", str(WORK / "dcgan_examples_out"), "--batchSize", str(BATCH), "--imageSize", "64"]
    try:
        exec(compile(setup, MAIN, "exec"), namespace)  # noqa: S102 - the reference, run as written
    finally:
        sys.argv = argv
    code = compile(step, MAIN, "exec")
    images = load_images(DATA, "train", size=64).images  # uint8 (60000, 1, 64, 64), bilinear resize
    shuffle = torch.Generator().manual_seed(0)
    spent, iters, epoch = 0.0, 0, 0
    per_epoch = len(images) // BATCH  # drop the last partial batch; its DataLoader would keep it
    while spent < seconds:
        order = torch.randperm(len(images), generator=shuffle)
        for i in range(per_epoch):
            batch = (images[order[i * BATCH:(i + 1) * BATCH]].float() / 255 - 0.5) / 0.5
            namespace.update(epoch=epoch, i=i, data=(batch, torch.zeros(BATCH)), dataloader=range(per_epoch))
            start = time.perf_counter()
            exec(code, namespace)  # noqa: S102
            spent += time.perf_counter() - start
            iters += 1
            if spent >= seconds:
                break
        epoch += 1
    netG, nz = namespace["netG"], namespace["nz"]
    rng = torch.Generator().manual_seed(0)
    out = []
    with torch.no_grad():  # as main.py draws its samples: netG(noise), batches of 64, train mode
        for start in range(0, num, BATCH):
            n = min(BATCH, num - start)
            fake = netG(torch.randn(n, nz, 1, 1, generator=rng))
            small = F.interpolate(fake.float(), size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
            out.append(to_uint8(small))
    torch.save(torch.cat(out), PEER_SAMPLES)
    PEER_INFO.write_text(json.dumps({"source": origin, "left_out": dropped, "iters": iters, "epochs": epoch,
                                     "train_seconds": spent, "last_line": printed[-1] if printed else "",
                                     "threads": torch.get_num_threads(),
                                     "dtype": str(next(netG.parameters()).dtype)}))


def run_peer(seconds: float, num: int) -> tuple[dict, torch.Tensor, list[str], float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-worker", "--seconds", f"{seconds:g}",
           "--num", str(num)]
    start = time.perf_counter()
    stream_lines(cmd)
    return json.loads(PEER_INFO.read_text()), torch.load(PEER_SAMPLES), cmd, time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ genchain
def run_ours(seconds: float) -> tuple[list[str], int, float]:
    shutil.rmtree(OUR_RUN, ignore_errors=True)
    cmd = GENCHAIN + ["train", "gan", "--data", str(DATA), "--out", str(OUR_RUN), "--config", str(CONFIG),
                      f"max_seconds={seconds:g}", "max_iters=10000000", "tensorboard=false"]
    start = time.perf_counter()
    stream_lines(cmd)
    wall = time.perf_counter() - start
    points = [json.loads(line) for line in (OUR_RUN / "metrics.jsonl").read_text().splitlines()]
    iters = max((p.get("iter", p.get("step", 0)) for p in points if p.get("kind") == "train"), default=0)
    return cmd, int(iters), wall


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-time budget, each side")
    parser.add_argument("--num", type=int, default=10000, help="generated samples scored, each side")
    parser.add_argument("--quick", action="store_true", help="smoke test: 6 s each, 500 samples, nothing written")
    parser.add_argument("--only", choices=["reference"], help="re-run one side, keep the other from the results")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker:
        peer_worker(args.seconds, args.num)
        return
    if args.quick:
        args.minutes, args.num = 0.1, 500
    seconds = args.minutes * 60
    ensure_data()
    examples_source(MAIN)  # fail early when the reference is absent

    from genchain.eval.image import compare_features, evaluate_run, extract_features, feature_network_for
    from genchain.train.image_data import load_images

    if args.only == "reference":
        kept = json.loads((ROOT / "benchmarks" / "results" / "gan_quality.json").read_text())
        if (kept["budget_minutes"], kept["num_generated"]) != (args.minutes, args.num):
            raise SystemExit(f"--only reference: results/gan_quality.json has {kept['budget_minutes']} min and "
                             f"{kept['num_generated']} samples; run both sides with --minutes {args.minutes:g}")
        report = {**kept["genchain"], "features": kept["features"], "feature_dim": kept["feature_dim"],
                  "floor": kept["floor"]}
        our_cmd, our_iters = kept["commands"]["genchain"].split(), kept["genchain"]["iters"]
        our_wall, eval_seconds = kept["genchain"]["process_wall_seconds"], kept["genchain"]["eval_seconds"]
        our_date = kept["genchain"].get("measured", kept["environment"]["date"])
    else:
        our_cmd, our_iters, our_wall = run_ours(seconds)
        started = time.perf_counter()
        report = evaluate_run(OUR_RUN, num=args.num, reference=DATA, split="test")
        eval_seconds = time.perf_counter() - started
        our_date = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"genchain: {our_iters:,} iterations in {seconds:g} s; FID {report['fid']:.2f} "
          f"(floor {report['floor']['fid']:.2f}) with {report['features'].get('kind')} features")

    peer, samples, peer_cmd, peer_wall = run_peer(seconds, args.num)
    network = feature_network_for(DATA, None, channels=1, image_size=28)  # the shared cached copy evaluate_run used
    real = extract_features(network, load_images(DATA, "test", size=28).images, desc="features test")
    theirs = compare_features(real, extract_features(network, samples, desc="features reference"), seed=0)
    ours = {k: report[k] for k in ("fid", "kid", "kid_std", "precision", "recall")}
    ratio = theirs["fid"] / ours["fid"]
    print(f"reference: {peer['iters']:,} iterations ({peer['epochs']} epochs started) in {peer['train_seconds']:.0f} "
          f"s; FID {theirs['fid']:.2f}")
    print(f"FID after {args.minutes:g} min: genchain {ours['fid']:.2f}, pytorch/examples DCGAN {theirs['fid']:.2f}, "
          f"floor {report['floor']['fid']:.2f}; reference/genchain {ratio:.2f}x (lower FID wins: "
          f"{'genchain' if ours['fid'] < theirs['fid'] else 'the reference'})")
    if args.quick:
        print("--quick: results not written")
        return
    write_results("gan_quality", {
        "claim": "GAN quality: FID (genchain's Fashion-MNIST classifier features, 28 px, vs the test split) after "
                 "the same CPU wall-time budget, lower than pytorch/examples dcgan/main.py",
        "budget_minutes": args.minutes, "num_generated": args.num, "num_real": len(real),
        "features": report["features"], "feature_dim": report["feature_dim"],
        "fid": {"genchain": ours["fid"], "reference": theirs["fid"], "floor": report["floor"]["fid"]},
        "fid_ratio_reference_over_genchain": ratio, "met": ours["fid"] < theirs["fid"],
        "genchain": {**ours, "iters": our_iters, "iters_per_second": our_iters / seconds,
                     "process_wall_seconds": our_wall, "eval_seconds": eval_seconds, "measured": our_date,
                     "weights": "best-on-SWD EMA generator (model.safetensors)", "image_size": 28},
        "reference": {**theirs, "iters": peer["iters"], "iters_per_second": peer["iters"] / peer["train_seconds"],
                      "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "epochs_started": peer["epochs"],
                      "train_seconds": peer["train_seconds"], "process_wall_seconds": peer_wall,
                      "dtype": peer["dtype"], "threads": peer["threads"], "image_size": 64,
                      "downsample": "64 -> 28 px, F.interpolate bilinear, antialias=True",
                      "sampling": "netG(noise) in batches of 64, train mode (as main.py)",
                      "last_progress_line": peer["last_line"]},
        "floor": report["floor"],
        "peer": f"pytorch/examples dcgan/main.py, its own classes, setup and loop body executed from {peer['source']}",
        "peer_left_out": peer["left_out"],
        "commands": {"reference": "PYTORCH_EXAMPLES_DIR=... " + " ".join(peer_cmd), "genchain": " ".join(our_cmd),
                     "benchmark": " ".join([Path(sys.executable).name, *sys.argv])},
    })


if __name__ == "__main__":
    main()
