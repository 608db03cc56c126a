"""The models a server offers: every run dir directly under ``--runs``, named by its directory.

A run's ``card.json`` says its family: ``text`` (our GPT, decoded by a
:class:`~genchain.serve.batching.BatchScheduler`), ``text-vae`` (sentences from a VAE's latent space,
:class:`genchain.generate.text_vae.TextVAEGenerator`), ``gan``
and ``vae`` (images, :func:`genchain.generate.image.load_image_generator`). Models load on first use, once, so a
server with many runs starts at once and pays for the ones people ask for.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genchain import rundir
from genchain.errors import GenchainError

TEXT_FAMILIES = ("text", "text-vae")
IMAGE_FAMILIES = ("gan", "vae")


class UnknownModel(GenchainError):
    """The request names a model this server does not offer."""


class UnsupportedModel(GenchainError):
    """The model exists but cannot serve this kind of request."""


@dataclass
class ModelEntry:
    name: str
    run_dir: Path
    family: str
    card: dict[str, Any]
    created: int
    loaded: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict[str, Any]:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "genchain",
                "genchain": {"family": self.family, "run_dir_name": self.run_dir.name,
                             "params": self.card.get("params")}}


def text_vae_available() -> bool:
    return importlib.util.find_spec("genchain.generate.text_vae") is not None


class Registry:
    """Run dirs under ``runs_dir`` by name; ``device``/``dtype`` are how text models are loaded."""

    def __init__(self, runs_dir: str | Path, device: str = "auto", dtype: str = "auto"):
        self.runs_dir = Path(runs_dir)
        self.device = device
        self.dtype = dtype
        self.entries: dict[str, ModelEntry] = {}
        self.skipped: dict[str, str] = {}  # run name -> why it is not served
        if not self.runs_dir.is_dir():
            raise GenchainError(f"--runs {self.runs_dir} is not a directory; pass the folder holding your run dirs")
        for path in sorted(p for p in self.runs_dir.iterdir() if p.is_dir()):
            if not (path / rundir.CARD).is_file():
                continue
            try:
                card = rundir.read_card(path)
            except GenchainError as err:
                self.skipped[path.name] = str(err)
                continue
            family = card.get("family")
            if family not in TEXT_FAMILIES + IMAGE_FAMILIES:
                self.skipped[path.name] = f"family {family!r} has no server endpoint"
                continue
            if family == "text-vae" and not text_vae_available():
                self.skipped[path.name] = "text-vae runs need genchain.generate.text_vae, which is not installed"
                continue
            created = int((path / rundir.CARD).stat().st_mtime)
            self.entries[path.name] = ModelEntry(path.name, path.resolve(), family, card, created)

    def get(self, name: str, families: tuple[str, ...]) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            why = self.skipped.get(name)
            known = ", ".join(sorted(e for e, m in self.entries.items() if m.family in families)) or "none"
            raise UnknownModel(f"model {name!r} is not served here" + (f" ({why})" if why else "")
                               + f"; models for this endpoint: {known} (GET /v1/models lists all)")
        if entry.family not in families:
            raise UnsupportedModel(f"model {name!r} is a {entry.family} model; this endpoint serves "
                                   f"{' or '.join(families)} models")
        return entry

    def names(self, families: tuple[str, ...]) -> list[str]:
        return [name for name, entry in self.entries.items() if entry.family in families]

    def load(self, entry: ModelEntry) -> Any:
        """The entry's generator, loaded once (TextGenerator, TextVAEGenerator or an image generator)."""
        with entry.lock:
            if entry.loaded is None:
                if entry.family == "text":
                    from genchain.generate.text import TextGenerator

                    entry.loaded = TextGenerator.from_run(entry.run_dir, device=self.device, dtype=self.dtype)
                elif entry.family == "text-vae":
                    from genchain.generate.text_vae import TextVAEGenerator

                    entry.loaded = TextVAEGenerator.from_run(entry.run_dir, device=self.device)
                else:
                    from genchain.generate.image import load_image_generator

                    entry.loaded = load_image_generator(entry.run_dir)
            return entry.loaded
