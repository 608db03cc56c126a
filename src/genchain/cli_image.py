"""Image commands: ``genchain train gan|vae``, ``genchain generate image``, ``genchain eval image``.

Each function calls one library entry point and prints what it did; the docstrings are the ``--help`` text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from genchain.errors import ConfigError


def cmd_train_gan(args: argparse.Namespace) -> None:
    """Train a GAN (DCGAN-style, optionally class-conditional) on an image dataset.

    KEY=VALUE overrides any config field (model.*, train.*, gan.* or the bare name): image size, widths,
    loss (nonsaturating, hinge, wgan-gp), spectral_norm, r1_gamma, ema, diffaugment, conditional, batch_size,
    max_iters, max_seconds, ... Sample grids go to RUN_DIR/samples/ during training. Ctrl-C stops and saves.

    examples:
      genchain train gan --data data/fashion-mnist --out runs/gan --config configs/gan_fashion.yaml
      genchain train gan --data data/digits --out runs/gan-tiny model=gan-tiny max_iters=200
      genchain train gan --data data/fashion-mnist --out runs/gan --resume max_iters=20000
    """
    from genchain.train.gan import train_gan

    train_gan(args.data, args.out, args.config, args.overrides, resume=args.resume).announce(args.out)


def cmd_train_vae(args: argparse.Namespace) -> None:
    """Train a convolutional VAE (beta-VAE, optionally conditional) on an image dataset.

    KEY=VALUE overrides any config field: latent_dim, beta, decoder (bernoulli, gaussian), conditional,
    batch_size, max_iters, max_seconds, ... Evaluation reports ELBO, reconstruction and KL on the test split;
    `genchain eval image` adds the importance-weighted NLL bound.

    examples:
      genchain train vae --data data/fashion-mnist --out runs/vae --config configs/vae_fashion.yaml
      genchain train vae --data data/digits --out runs/vae-tiny model=vae-tiny max_iters=200 beta=4
    """
    from genchain.train.vae import train_vae

    train_vae(args.data, args.out, args.config, args.overrides, resume=args.resume).announce(args.out)


def cmd_generate_image(args: argparse.Namespace) -> None:
    """Generate images from a GAN or VAE run: samples (PNG files or one grid), a latent walk (GIF), or
    reconstructions (VAE).

    examples:
      genchain generate image --run runs/gan --num 64 --grid -o out/
      genchain generate image --run runs/gan --num 16 --label Sneaker --seed 3 -o out/
      genchain generate image --run runs/gan --interpolate 1,2 --steps 16 -o walk.gif
      genchain generate image --run runs/vae --reconstruct a.png b.png -o recon/
      genchain generate image --run runs/gan --num 4 --key studio -o out/    # sign as identity "studio"

    Every file is signed (FILE.manifest.json, C2PA embedded, a ledger entry; `genchain verify FILE` checks it)
    unless --no-sign, and every PNG gets an invisible watermark keyed by the identity unless --no-watermark.
    """
    from genchain.generate import image

    modes = sum(bool(x) for x in (args.interpolate, args.reconstruct))
    if modes > 1:
        raise ConfigError("choose one of --interpolate and --reconstruct")
    if args.interpolate:
        try:
            a, b = (int(x) for x in args.interpolate.split(","))
        except ValueError as err:
            raise ConfigError(f"--interpolate takes two seeds, like 1,2 (got {args.interpolate!r})") from err
        written = [image.interpolate(args.run, Path(args.out), seeds=(a, b), steps=args.steps, label=args.label)]
    elif args.reconstruct:
        written = image.reconstruct(args.run, [Path(p) for p in args.reconstruct], Path(args.out), label=args.label)
    else:
        written = image.sample(args.run, Path(args.out), num=args.num, label=args.label, seed=args.seed,
                               grid=args.grid)
    print(f"wrote {len(written)} file(s): {written[0]}" + (" ..." if len(written) > 1 else ""))
    _watermark_and_sign(args, written)


def _watermark_and_sign(args: argparse.Namespace, written: list[Path]) -> None:
    """Watermark each PNG (the mark changes pixels, so it comes first), then sign and record every file."""
    from genchain.provenance.keys import ensure_identity
    from genchain.provenance.record import record_files
    from genchain.provenance.watermark_image import image_watermark_key, watermark_png_file

    key = image_watermark_key(ensure_identity(args.key)[0]) if args.watermark else b""
    marks = []
    for path in written:
        if not args.watermark:
            marks.append({"applied": False, "reason": "turned off with --no-watermark"})
        elif path.suffix.lower() != ".png":
            marks.append({"applied": False, "reason": f"{path.suffix} files are not watermarked (PNG only)"})
        else:
            marks.append(watermark_png_file(path, key))
    if not args.sign:
        return
    mode = "interpolate" if args.interpolate else "reconstruct" if args.reconstruct else "sample"
    params = {"mode": mode, "num": args.num, "label": args.label, "grid": args.grid, "steps": args.steps,
              "interpolate": args.interpolate}
    for result in record_files(zip(written, marks, strict=True), kind="image", run_dir=Path(args.run),
                               params=params, seed=args.seed, prompt=None, key=args.key, ledger=args.ledger):
        print(result.summary())


def cmd_eval_image(args: argparse.Namespace) -> None:
    """Measure a GAN or VAE run: FID, KID and precision/recall against real images, and for a VAE the
    importance-weighted NLL bound on the test split.

    Features come from a small classifier trained on the reference dataset's own labels (Inception-v3 weights
    cannot be downloaded here; every report says which features it used). --inception FILE uses the standard
    pt_inception FID weights from a local file instead.

    examples:
      genchain eval image --run runs/gan
      genchain eval image --run runs/gan --num 10000 --reference data/fashion-mnist -o report.json
      genchain eval image --run runs/vae --iw-samples 100
    """
    from genchain.eval.image import evaluate_run

    report = evaluate_run(args.run, num=args.num, reference=args.reference, split=args.split,
                          inception=args.inception, iw_samples=args.iw_samples, seed=args.seed)
    from genchain.fileio import print_report

    print_report(report, args.output)


def add_train_commands(train: argparse._SubParsersAction, command: Callable) -> None:
    for name, func, help_text in (("gan", cmd_train_gan, "GAN image generator"),
                                  ("vae", cmd_train_vae, "VAE image generator")):
        p = command(train, name, func, help_text)
        p.add_argument("--data", required=True, metavar="DATASET_DIR")
        p.add_argument("--out", required=True, metavar="RUN_DIR")
        p.add_argument("--config", metavar="FILE.yaml")
        p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def add_generate_commands(generate: argparse._SubParsersAction, command: Callable) -> None:
    p = command(generate, "image", cmd_generate_image, "images from a GAN or VAE run")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR|OUT.gif")
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--label", help="class name (or index) for a conditional model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", action="store_true", help="one grid image instead of one file per sample")
    p.add_argument("--interpolate", metavar="A,B", help="walk the latent space between the seeds A and B")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--reconstruct", nargs="+", metavar="IMAGE", help="VAE: encode and decode these images")
    p.add_argument("--key", default="default", metavar="NAME",
                   help="identity that signs the files and keys the watermark (default: default)")
    p.add_argument("--no-sign", dest="sign", action="store_false", help="write no manifest, no ledger entry")
    p.add_argument("--no-watermark", dest="watermark", action="store_false", help="leave the pixels unmarked")
    p.add_argument("--ledger", metavar="URL", help="ledger path or URL (default: $GENCHAIN_HOME/ledger.db)")


def add_eval_commands(evaluate: argparse._SubParsersAction, command: Callable) -> None:
    p = command(evaluate, "image", cmd_eval_image, "FID/KID/precision-recall of a GAN or VAE run")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--num", type=int, default=10000, help="generated images to compare (default 10000)")
    p.add_argument("--reference", metavar="DATASET_DIR", help="real images (default: the run's training data)")
    p.add_argument("--split", help="reference split (default: test, else validation, else train)")
    p.add_argument("--inception", metavar="FILE", help="pt_inception FID weights to use as the feature network")
    p.add_argument("--iw-samples", type=int, default=100, help="VAE: importance samples for the NLL bound")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", metavar="REPORT.json")
