"""Shuffled epochs over a training split, the sampler the image VAE and the text VAE share.

Each epoch is a fresh permutation drawn from a checkpointed ``torch.Generator``; batches are consecutive slices
of it and an epoch's tail that would make a short batch is dropped. The state (generator, permutation,
position) is saved with the run, so ``--resume`` draws exactly the batches an uninterrupted run would.

Under torchrun every rank holds the same generator and permutation and walks it in steps of the *global* batch
(``batch_size`` x world size), keeping only its slice, as ``DistributedSampler`` does: no row is seen twice in an
epoch, and 2 processes x B see exactly the rows of 1 process x 2B.
"""

from __future__ import annotations

from typing import Any

import torch

from genchain.errors import InputError
from genchain.train import distributed


class EpochSampler:
    """Row indices of a split of ``rows`` items, ``batch_size`` per rank per draw.

    Args:
        rows: the size of the training split.
        batch_size: rows per rank per batch.
        seed: seeds the permutations (the same on every rank).
        what: what a row is ("images", "sentences"), for the error message.
        hint: how to fix a split smaller than one global batch.
    """

    def __init__(self, rows: int, batch_size: int, seed: int, what: str, hint: str = "lower batch_size"):
        self.rows = rows
        self.global_batch = batch_size * distributed.world().world_size
        self.rank_part = distributed.local_slice(batch_size)
        if rows < self.global_batch:
            raise InputError(f"the training split has {rows} {what}, fewer than batch_size x processes = "
                             f"{self.global_batch}; {hint}")
        self.generator = torch.Generator().manual_seed(seed)
        self.permutation = torch.randperm(rows, generator=self.generator)
        self.position = 0

    def next_indices(self) -> torch.Tensor:
        """This rank's rows of the next batch."""
        if self.position + self.global_batch > self.rows:  # new epoch; the tail is dropped
            self.permutation = torch.randperm(self.rows, generator=self.generator)
            self.position = 0
        index = self.permutation[self.position : self.position + self.global_batch][self.rank_part]
        self.position += self.global_batch
        return index

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "permutation": self.permutation, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.permutation = state["permutation"]
        self.position = int(state["position"])
