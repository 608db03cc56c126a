"""Claim 1 of issue 4: GAN training images/s with pytorch/examples' DCGAN at 64 px on Fashion-MNIST, vs that code.

Both sides train the DCGAN of pytorch/examples ``dcgan/main.py`` (nz 100, ngf = ndf = 64, batch norm, 64 px, one
channel) with its recipe (batch 64; D on a real and a fake batch with BCE, then G; Adam 2e-4, betas 0.5/0.999) on
Fashion-MNIST's train split resized to 64 px (bilinear, as ``transforms.Resize(64)`` does on a 28 px image).

* genchain: ``genchain train gan --config configs/gan_dcgan64.yaml`` itself, as a subprocess (bf16 autocast on a
  CPU with native bf16, fused Adam, the EMA generator update); images/s is the engine's own ``items_per_s`` per
  iteration (``log_interval=1``), i.e. real images consumed per second of wall time, data batches included.
* the reference: ``dcgan/main.py`` read at run time from a pytorch/examples checkout or bare git mirror named by
  $PYTORCH_EXAMPLES_DIR (never copied here). Its file imports torchvision, which this environment lacks, so the
  script parses it with ``ast`` and executes its own statements with torch only: the argument parser (with
  ``--dataset mnist``), the seed, ``weights_init``, ``Generator``, ``Discriminator``, ``criterion``, the
  optimizers, and the body of its inner training loop verbatim (D real, D fake, D step, G step, the ``.item()``
  calls and the progress ``print``, captured). Left out: the torchvision imports and dataset/DataLoader (``nc = 1``
  as its mnist branch sets; batches come from our decoded images in its normalisation ``(x / 255 - 0.5) / 0.5``,
  prepared before the clock starts, which only flatters the reference), and the ``if i % 100 == 0`` image saving
  and ``dry_run`` break. It runs in fp32, as written for the CPU; each iteration's loop body is timed.

The two alternate run by run, each in a fresh process; the first iterations of each run are warm-up and are not
counted. MFU is against the bf16 GEMM peak measured in the same run, from FLOPs counted by
``torch.utils.flop_counter`` on one step of the reference (the same convolutions as ours).

    PYTORCH_EXAMPLES_DIR=/path/to/examples python benchmarks/bench_gan_throughput.py [--runs 3] [--iters 14] [--skip 3]
    ... --quick                      # a smoke test: 1 run of 4 iterations, results not written
    ... --profile                    # profile genchain's step in-process (torch.profiler) even if the target is met
    ... --also gan.channels_last=true  # also time genchain with an override (reported aside, not the claim)
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import GENCHAIN, ROOT, WORK, bf16_matmul_peak_tflops, examples_source, median, stream_lines, write_results

DATA = WORK / "fashion_mnist"
RAW = WORK / "fashion_mnist_raw"
CONFIG = ROOT / "configs" / "gan_dcgan64.yaml"
BATCH = 64
MAIN = "dcgan/main.py"


# ------------------------------------------------------------------------------------------------ the reference


def _is_torchvision_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("torchvision") for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torchvision")


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def split_reference(source: str) -> tuple[ast.Module, ast.Module, list[str]]:
    """(setup, step, what was left out): main.py's top-level statements up to the epoch loop without torchvision
    and the dataset, and the inner loop's body without its ``if`` blocks (image saving, dry-run break)."""
    tree = ast.parse(source)
    setup: list[ast.stmt] = []
    dropped: list[str] = []
    loop: ast.For | None = None
    for node in tree.body:
        line = ast.get_source_segment(source, node) or ""
        first = line.splitlines()[0] if line else type(node).__name__
        if _is_torchvision_import(node):
            dropped.append(first)
        elif isinstance(node, ast.If) and any(isinstance(n, ast.Name) and n.id == "dataset" and
                                              isinstance(n.ctx, ast.Store) for n in ast.walk(node)):
            dropped.append(first + " ... (the torchvision datasets; nc = 1 as its mnist branch sets)")
        elif isinstance(node, ast.Assert) and _mentions(node, "dataset"):
            dropped.append(first)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "dataloader"
                                                 for t in node.targets):
            dropped.append(first + " ...")
        elif isinstance(node, ast.For) and _mentions(node.target, "epoch"):
            loop = node
            break
        else:
            setup.append(node)
    if loop is None:
        raise SystemExit(f"{MAIN}: no `for epoch ...` loop found; the reference changed shape")
    inner = next((n for n in loop.body if isinstance(n, ast.For) and _mentions(n.iter, "dataloader")), None)
    if inner is None:
        raise SystemExit(f"{MAIN}: no `for i, data in enumerate(dataloader)` loop found")
    body = [n for n in inner.body if not isinstance(n, ast.If)]
    dropped += [ast.unparse(n).splitlines()[0] + " ..." for n in inner.body if isinstance(n, ast.If)]
    dropped += ["torch.save(...) checkpoints after each epoch"]
    return ast.Module(body=setup, type_ignores=[]), ast.Module(body=body, type_ignores=[]), dropped


def peer_worker(data: Path, iters: int, out: Path) -> None:
    """Run the reference's own setup and loop body for ``iters`` batches; write per-iteration times to ``out``."""
    from genchain.train.image_data import load_images

    source, origin = examples_source(MAIN)
    setup, step, dropped = split_reference(source)
    printed: list[str] = []
    namespace: dict = {"__name__": "dcgan_main", "print": lambda *a, **k: printed.append(" ".join(map(str, a))),
                       "nc": 1}
    outf = WORK / "dcgan_examples_out"
    argv = sys.argv
    sys.argv = [MAIN, "--dataset", "mnist", "--dataroot", str(data), "--manualSeed", "1", "--niter", "1",
                "--outf", str(outf), "--batchSize", str(BATCH), "--imageSize", "64"]
    try:
        exec(compile(setup, MAIN, "exec"), namespace)  # noqa: S102 - the reference, run as written
    finally:
        sys.argv = argv
    for name in ("netG", "netD", "optimizerD", "optimizerG", "criterion"):
        assert name in namespace, f"{MAIN} no longer defines {name}"
    code = compile(step, MAIN, "exec")

    # Batches as its DataLoader would yield them: shuffled, ToTensor + Normalize((0.5,), (0.5,)), made up front.
    images = load_images(data, "train", size=64, max_rows=BATCH * (iters + 1)).images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    batches = [((images[order[k * BATCH:(k + 1) * BATCH]].float() / 255 - 0.5) / 0.5, torch.zeros(BATCH))
               for k in range(iters + 1)]
    namespace.update(epoch=0, dataloader=batches)

    # FLOPs of one step (one extra iteration, before the clock): the same convolutions genchain runs.
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        namespace.update(i=0, data=batches[-1])
        exec(code, namespace)  # noqa: S102
    times = []
    for i, batch in enumerate(batches[:iters]):
        namespace.update(i=i, data=batch)
        start = time.perf_counter()
        exec(code, namespace)  # noqa: S102
        times.append(time.perf_counter() - start)
    out.write_text(json.dumps({
        "images_per_s": [BATCH / t for t in times], "flops_per_step": counter.get_total_flops(), "source": origin,
        "left_out": dropped, "last_line": printed[-1] if printed else "", "threads": torch.get_num_threads(),
        "dtype": str(next(namespace["netD"].parameters()).dtype),
    }))


def peer_run(iters: int) -> tuple[dict, list[str]]:
    out = WORK / "gan_peer.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-worker", "--iters", str(iters)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text()), cmd


# ------------------------------------------------------------------------------------------------ genchain
def ensure_data() -> Path:
    if not (DATA / "manifest.json").is_file():
        subprocess.run(GENCHAIN + ["data", "get", "fashion-mnist", "-o", str(RAW)], check=True)
        subprocess.run(GENCHAIN + ["data", "ingest", str(RAW), "--kind", "image", "-o", str(DATA), "--overwrite"],
                       check=True)
    return DATA


def genchain_cmd(iters: int, out: Path, extra: list[str]) -> list[str]:
    return GENCHAIN + ["train", "gan", "--data", str(DATA), "--out", str(out), "--config", str(CONFIG),
                       f"max_iters={iters}", "eval_interval=100000", "eval_iters=1", "log_interval=1",
                       "tensorboard=false", *extra]


def genchain_run(iters: int, extra: list[str]) -> tuple[list[float], list[str]]:
    out = WORK / "gan_throughput_run"
    shutil.rmtree(out, ignore_errors=True)
    cmd = genchain_cmd(iters, out, extra)
    stream_lines(cmd)
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    card = json.loads((out / "card.json").read_text()) if (out / "card.json").is_file() else {}
    if card.get("precision_scheme"):
        print(f"genchain precision: {card['precision_scheme']}")
    return [p["items_per_s"] for p in points if p["kind"] == "train"], cmd


def profile_genchain(steps: int = 6, warmup: int = 3) -> dict:
    """torch.profiler over genchain's own GANTask.train_step (the step the CLI runs), top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    from genchain.models.registry import create_model
    from genchain.train.gan import GANTask, resolve_recipe
    from genchain.train.image_data import load_images

    recipe = resolve_recipe(CONFIG, ["eval_iters=1"])
    images = load_images(DATA, "train", size=64, max_rows=BATCH * 32)
    model = create_model(recipe.gan.model, channels=1)
    task = GANTask(model, recipe, images, images, torch.device("cpu"), WORK / "gan_profile_run")
    for it in range(warmup):
        task.train_step(it)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for it in range(warmup, warmup + steps):
            task.train_step(it)
        seconds = time.perf_counter() - start
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
            "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps} for e in events[:15]]
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return {"steps": steps, "images_per_s_under_profiler": BATCH * steps / seconds, "top_ops": top,
            "precision": task.precision}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=14, help="iterations per run, each side")
    parser.add_argument("--skip", type=int, default=3, help="warm-up iterations not counted")
    parser.add_argument("--also", action="append", default=[], metavar="KEY=VALUE",
                        help="also time genchain with this override (e.g. gan.channels_last=true); reported aside")
    parser.add_argument("--profile", action="store_true",
                        help="profile genchain's step in-process afterwards (done anyway when the target is missed)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 run of 4 iterations, nothing written")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.iters, args.skip = 1, 4, 1
    if args.peer_worker:
        peer_worker(DATA, args.iters, WORK / "gan_peer.json")
        return
    ensure_data()
    examples_source(MAIN)  # fail early when the reference is absent
    ours, theirs, peaks, variants = [], [], [], {o: [] for o in args.also}
    peer: dict = {}
    for run in range(args.runs):  # interleaved, so drift in machine load hits both alike
        peaks.append(bf16_matmul_peak_tflops())
        peer, peer_cmd = peer_run(args.iters)
        theirs.append(median(peer["images_per_s"][args.skip:]))
        rates, our_cmd = genchain_run(args.iters, [])
        ours.append(median(rates[args.skip:]))
        line = (f"run {run + 1}: reference {theirs[-1]:,.1f} img/s, genchain {ours[-1]:,.1f} img/s, "
                f"bf16 peak {peaks[-1]:.2f} TFLOP/s")
        for override in args.also:
            rates, _ = genchain_run(args.iters, [override])
            variants[override].append(median(rates[args.skip:]))
            line += f", genchain {override} {variants[override][-1]:,.1f} img/s"
        print(line, flush=True)
    peak = max(peaks)  # the machine's best bf16 GEMM rate seen in this run; slower readings are interference
    ratio = median(ours) / median(theirs)
    flops_per_image = peer["flops_per_step"] / BATCH
    mfu = {name: median(v) * flops_per_image / (peak * 1e12)
           for name, v in (("genchain", ours), ("reference", theirs))}
    print(f"median images/s: genchain {median(ours):,.1f}, pytorch/examples DCGAN {median(theirs):,.1f}; "
          f"ratio {ratio:.2f}x (target >= 4x); {flops_per_image / 1e9:.2f} GFLOP per image per step; MFU vs measured "
          f"bf16 peak {peak:.2f} TFLOP/s: genchain {mfu['genchain']:.1%}, reference {mfu['reference']:.1%}")
    for override, values in variants.items():
        print(f"  genchain with {override}: {median(values):,.1f} img/s ({median(values) / median(theirs):.2f}x)")
    profiled = profile_genchain() if args.profile or (ratio < 4 and not args.quick) else None
    if args.quick:
        print("--quick: results not written")
        return
    write_results("gan_throughput", {
        "claim": "GAN training images/s, pytorch/examples DCGAN at 64 px on Fashion-MNIST, batch 64, CPU, "
                 ">= 4x pytorch/examples dcgan/main.py",
        "peer": f"pytorch/examples dcgan/main.py, its own classes, setup and loop body executed from {peer['source']} "
                f"({peer['dtype']}, {peer['threads']} threads)",
        "peer_left_out": peer["left_out"], "peer_last_progress_line": peer["last_line"],
        "genchain_images_per_s": ours, "reference_images_per_s": theirs, "ratio_of_medians": ratio,
        "genchain_variants_images_per_s": variants, "flops_per_image_per_step": flops_per_image,
        "bf16_peak_tflops": peaks, "mfu": mfu, "target_ratio": 4.0, "met": ratio >= 4.0, "profile": profiled,
        "commands": {"reference": "PYTORCH_EXAMPLES_DIR=... " + " ".join(peer_cmd), "genchain": " ".join(our_cmd),
                     "benchmark": " ".join([Path(sys.executable).name, *sys.argv])},
        "runs": args.runs, "iters_per_run": args.iters, "warmup_iters_skipped": args.skip,
    })


if __name__ == "__main__":
    main()
