"""The provenance step of the server, off the request path: artefacts are written before the response, signed
after it.

A response needs the artefact's id and its file (the bytes, hence the SHA-256, are final: text is watermarked
while it is sampled, an image before it is saved). Embedding C2PA, signing the manifest and appending to the
ledger take tens of milliseconds each, so one background thread does them in order and stores the signed manifest
in the database when it is done; ``GET /v1/artefacts/{id}`` shows ``"manifest": null`` until then.
:meth:`Signer.close` signs what is still queued before the server exits.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genchain.serve.store import Store

log = logging.getLogger("genchain.serve")


@dataclass(frozen=True)
class SignJob:
    artefact_id: str
    path: Path
    kind: str
    run_dir: Path
    params: dict[str, Any]
    seed: int | None
    prompt: str | None
    watermark: dict[str, Any] | None


class Signer:
    """One thread, one signing identity, one open ledger."""

    def __init__(self, store: Store, key: str = "default", ledger: str | None = None, home: Path | None = None):
        self.store = store
        self.home = home
        self.key = key
        self.ledger_url = ledger
        self.signed = 0
        self.failed = 0
        self._jobs: queue.Queue[SignJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="genchain-signer", daemon=True)
        self._thread.start()

    def submit(self, job: SignJob) -> None:
        self._jobs.put(job)

    def pending(self) -> int:
        return self._jobs.qsize()

    def wait(self) -> None:
        """Block until every queued job is done (tests, shutdown)."""
        self._jobs.join()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _loop(self) -> None:
        from genchain.provenance.keys import ensure_identity
        from genchain.provenance.ledger import Ledger
        from genchain.provenance.record import record_artefact

        identity = ensure_identity(self.key, self.home)[0]
        ledger = Ledger.open(self.ledger_url)
        try:
            while True:
                job = self._jobs.get()
                try:
                    if job is None:
                        return
                    result = record_artefact(job.path, kind=job.kind, run_dir=job.run_dir, params=job.params,
                                             seed=job.seed, prompt=job.prompt, watermark=job.watermark,
                                             identity=identity, ledger=ledger)
                    manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
                    self.store.set_manifest(job.artefact_id, manifest)
                    self.signed += 1
                except Exception as err:  # one bad file must not stop the signing of the others
                    self.failed += 1
                    log.error("could not sign artefact %s: %s", getattr(job, "artefact_id", "?"), err)
                finally:
                    self._jobs.task_done()
        finally:
            ledger.close()
