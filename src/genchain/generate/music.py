"""Music from a note-token GPT run: sample N bars (KV cache), tokens -> MIDI -> WAV with fluidsynth.

Sampling reuses the text generator's rule (:func:`genchain.generate.text.sample_next`) and the GPT's KV cache.
It stops when the ``BAR`` token that would open bar N+1 (or ``EOS``) is drawn. When the context is full, the
cache is rebuilt from the header (``BOS KEY TS``) and the latest bars, so the key stays in view however long
the piece gets (a plain sliding window would drop the header that conditions the sample).

WAV rendering runs Debian's ``fluidsynth`` with a General-MIDI soundfont; it is a separate program, so its
absence is reported with the apt command that installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from genchain.data import music_tokens as mt
from genchain.errors import ConfigError, InputError
from genchain.generate.text import SamplingConfig, sample_next
from genchain.models.gpt import GPT
from genchain.runtime import select_device, select_precision

SOUNDFONTS = ("/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf2/FluidR3_GM.sf2")
APT_HINT = "sudo apt-get install --no-install-recommends fluidsynth timgm6mb-soundfont"
MAX_BARS = 256


@dataclass
class MusicSample:
    """One generated piece: its tokens (header included) and the decoded notes."""

    ids: list[int]
    piece: mt.Piece


class MusicGenerator:
    """A trained note-token GPT and the device and dtype to decode with."""

    def __init__(self, model: GPT, device: str = "auto", dtype: str = "auto"):
        self.device = select_device(device)
        precision = select_precision(self.device, dtype)
        self.dtype = {"fp32": torch.float32, "fp16-mixed": torch.float16}.get(precision, torch.bfloat16)
        self.model = model.to(self.device, self.dtype).eval()

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", dtype: str = "auto") -> MusicGenerator:
        from genchain.train.music import load_music_gpt

        return cls(load_music_gpt(run_dir)[0], device, dtype)

    def sample(self, prompts: list[list[int]], bars: int, cfg: SamplingConfig) -> list[MusicSample]:
        """Continue each prompt (header first, then whole bars) until it holds ``bars`` bars.

        Decoding runs on one thread: each step is a few tiny matrix products, and on a busy 2-core machine a
        second thread's spin-waits made it 100x slower (measured: 0.4 s vs 38 s for 8 two-bar samples).
        """
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._sample(prompts, bars, cfg)
        finally:
            torch.set_num_threads(before)

    @torch.inference_mode()
    def _sample(self, prompts: list[list[int]], bars: int, cfg: SamplingConfig) -> list[MusicSample]:
        if not 1 <= bars <= MAX_BARS:
            raise ConfigError(f"--bars must be in 1..{MAX_BARS}, got {bars}")
        num, block = len(prompts), self.model.config.block_size
        generator = torch.Generator(self.device)
        generator.manual_seed(cfg.seed if cfg.seed is not None else int(torch.seed() % 2**63))
        seqs = [list(p) for p in prompts]
        done = [mt.count_bars(s) > bars or (s and s[-1] == mt.EOS) for s in seqs]
        # open the first bar ourselves when a prompt is only a header: every piece starts with BAR
        for s in seqs:
            if mt.count_bars(s) == 0:
                s.append(mt.BAR)
        cache = self.model.new_cache(num, block, self.dtype)
        logits = self._prefill(seqs, cache)
        max_steps = bars * 160  # a 4/4 bar of 16th-note chords is ~100 tokens; this only bounds a runaway sample
        # after the header only bar lines, positions, pitches and durations are grammatical; EOS is held back
        # so that every sample has the bars asked for
        banned = torch.zeros(logits.size(-1), dtype=torch.bool, device=self.device)
        banned[: mt.POS0] = True
        banned[mt.BAR] = False
        for _ in range(max_steps):
            if all(done):
                break
            logits = logits.masked_fill(banned, float("-inf"))
            token = sample_next(logits, cfg, None, generator).tolist()
            for i, tok in enumerate(token):
                if done[i]:
                    continue
                if tok == mt.BAR and mt.count_bars(seqs[i]) >= bars:
                    done[i] = True
                    continue
                seqs[i].append(tok)
            if all(done):
                break
            if cache.length >= block:
                cache.reset()
                logits = self._prefill(seqs, cache)
            else:
                step = torch.tensor([[s[-1]] for s in seqs], dtype=torch.long, device=self.device)
                logits = self.model(step, cache=cache).logits[:, -1, :].float()
        return [MusicSample(s, mt.decode(s)) for s in seqs]

    def _prefill(self, seqs: list[list[int]], cache) -> torch.Tensor:
        """Fill an empty cache with each sequence's header and its last bars, all cut to one length."""
        block = self.model.config.block_size
        keep = block * 3 // 4
        windows = [s if len(s) <= keep else s[: mt.HEADER_LEN] + s[-(keep - mt.HEADER_LEN):] for s in seqs]
        length = min(len(w) for w in windows)  # a batch prefill needs equal lengths: cut from the left
        context = [w[: mt.HEADER_LEN] + w[len(w) - length + mt.HEADER_LEN:] if len(w) > length else w
                   for w in windows]
        ids = torch.tensor(context, dtype=torch.long, device=self.device)
        return self.model(ids, cache=cache).logits[:, -1, :].float()


def header(tonic: int, mode: str, bar_len: int = 16) -> list[int]:
    """``BOS KEY TS``: the conditioning a sample starts from."""
    return mt.encode(mt.Piece(tonic, mode, bar_len, ()))[: mt.HEADER_LEN]


def prime_ids(path: str | Path, key: tuple[int, str] | None) -> list[int]:
    """The tokens of an opening to continue: its header and its whole bars (``EOS`` dropped).

    With ``key`` the opening is transposed into that key (same mode only: a major opening is not made minor).
    """
    piece = mt.read_piece(path)
    if key is not None:
        if key[1] != piece.mode:
            raise InputError(f"{path} is in {mt.key_name(piece.tonic, piece.mode)}; --key must keep its mode "
                             f"({piece.mode}) or be left out")
        shift = (key[0] - piece.tonic) % 12
        piece = piece.transpose(shift - 12 if shift > 6 else shift)
    ids = mt.encode(piece)
    return ids[:-1]


def find_soundfont(soundfont: str | None) -> Path:
    if soundfont is not None:
        if not Path(soundfont).is_file():
            raise InputError(f"--soundfont {soundfont} does not exist; give a .sf2 file")
        return Path(soundfont)
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise InputError(f"no General-MIDI soundfont found (looked for {', '.join(SOUNDFONTS)}); install one with "
                     f"`{APT_HINT}` or pass --soundfont FILE.sf2, or write a .mid instead")


def render_wav(midi: Path, wav: Path, soundfont: str | None = None, sample_rate: int = 44100) -> Path:
    """Render ``midi`` to ``wav`` with fluidsynth (no audio driver, no shell), via a temp file."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise InputError(f"fluidsynth is not installed, so no WAV can be rendered; install it with `{APT_HINT}` "
                         "or write a .mid (-o out.mid)")
    font = find_soundfont(soundfont)
    tmp = wav.with_name(f".{wav.name}.tmp.wav")
    result = subprocess.run([exe, "-ni", "-g", "1.0", "-F", str(tmp), "-r", str(sample_rate), str(font), str(midi)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise InputError(f"fluidsynth failed to render {midi} ({result.stderr.strip()[-300:]})")
    tmp.replace(wav)
    return wav


@dataclass
class Composition:
    """What ``generate music`` wrote: the files (the .mid always, the .wav when asked) and their sidecar."""

    files: list[Path]
    sidecar: Path
    piece: mt.Piece
    bars: int


def compose(run_dir: str | Path, out: Path, *, bars: int = 8, key: str | None = None, tempo: float = 90.0,
            prime: str | Path | None = None, temperature: float = 1.0, top_k: int = 0, seed: int = 0,
            soundfont: str | None = None, program: int | None = None) -> Composition:
    """Sample ``bars`` bars from a music run and write ``out`` (.mid, or .wav with the .mid beside it)."""
    import time

    from genchain import rundir
    from genchain.fileio import atomic_write_json

    suffix = out.suffix.lower()
    if suffix not in (".wav", ".mid", ".midi"):
        raise InputError(f"-o {out}: write .wav (rendered with fluidsynth) or .mid")
    if program is not None and not 0 <= program <= 127:
        raise InputError(f"--program must be a General-MIDI program number 0-127, got {program}")
    if not 20 <= tempo <= 300:
        raise InputError(f"--tempo must be in 20..300 beats per minute, got {tempo}")
    if suffix == ".wav":  # fail before sampling, not after
        if shutil.which("fluidsynth") is None:
            raise InputError(f"fluidsynth is not installed, so no WAV can be rendered; install it with `{APT_HINT}` "
                             "or write a .mid (-o out.mid)")
        find_soundfont(soundfont)
    card = rundir.require_family(run_dir, "music")
    chosen = mt.parse_key(key) if key else None
    if prime is not None:
        prompt = prime_ids(prime, chosen)
        prompt_bars = mt.count_bars(prompt)
        if prompt_bars >= bars:
            raise InputError(f"--prime {prime} already has {prompt_bars} bars; ask for more --bars than that")
    else:
        prompt = header(*(chosen or (0, "major")))
    generator = MusicGenerator.from_run(run_dir)
    if len(prompt) >= generator.model.config.block_size:
        keep = generator.model.config.block_size // 2
        prompt = prompt[: mt.HEADER_LEN] + prompt[-(keep - mt.HEADER_LEN):]
        while prompt[mt.HEADER_LEN] != mt.BAR:  # start the kept part at a bar line
            prompt.pop(mt.HEADER_LEN)
    cfg = SamplingConfig(max_new_tokens=1, temperature=temperature, top_k=top_k, seed=seed)
    sample = generator.sample([prompt], bars, cfg)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    midi = out if suffix != ".wav" else out.with_suffix(".mid")
    mt.write_midi(sample.piece, midi, tempo=tempo, program=program)
    files = [midi]
    if suffix == ".wav":
        files.append(render_wav(midi, out, soundfont))
    sidecar = out.with_name(out.name + ".json")
    atomic_write_json(sidecar, {
        "kind": "music", "backend": "genchain music run", "run": str(Path(run_dir).resolve()),
        "model": card.get("model"), "seed": seed, "prompt": str(prime) if prime else None,
        "config": {"bars": bars, "key": mt.key_name(sample.piece.tonic, sample.piece.mode), "tempo": tempo,
                   "temperature": temperature, "top_k": top_k, "program": program,
                   "soundfont": str(find_soundfont(soundfont)) if suffix == ".wav" else None},
        "files": [f.name for f in files], "notes": len(sample.piece.notes), "bars": sample.piece.num_bars,
        "tokens": len(sample.ids), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return Composition(files, sidecar, sample.piece, sample.piece.num_bars)
