"""Exact resume: a train DataLoader that remembers its position, and RNG state in checkpoints.

Why hand-written: Lightning resumes a plain DataLoader mid-epoch from the *start* of the epoch
(it only restores its own counters) and does not checkpoint the RNGs; torchdata's
`StatefulDataLoader` is not a dependency. Lightning does save and restore any train loader
with ``state_dict``/``load_state_dict`` (``_Stateful``), and any callback's state: we use both.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler


class SkippingSampler(DistributedSampler):
    """`DistributedSampler` (one replica outside DDP) that can skip the start of one epoch.

    Its order is a function of ``(seed, epoch)`` only (Lightning calls ``set_epoch``), so a
    resumed run sees the same permutation; ``skip(epoch, n)`` drops the first n samples of that
    epoch — the ones consumed before the checkpoint.

    With `lengths` (one per example) and `batch_size`, each rank's order is grouped by length:
    its shuffled indices are cut into runs of 50 batches, each run sorted by length and cut into
    batches, and the batches shuffled, so a batch pads to a length near its examples' own
    (``data.group_by_length``; what transformers' Trainer calls group_by_length, which
    Lightning's loaders lack).
    """

    def __init__(
        self, dataset, shuffle: bool, seed: int, lengths=None, batch_size: int = 1
    ) -> None:
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        super().__init__(
            dataset,
            num_replicas=torch.distributed.get_world_size() if dist else 1,
            rank=torch.distributed.get_rank() if dist else 0,
            shuffle=shuffle,
            seed=seed,
        )
        self._skip_epoch, self._skip_n = -1, 0
        self.lengths, self.batch_size = lengths, batch_size

    def _grouped(self, indices: list[int]) -> list[int]:
        run = self.batch_size * 50
        batches = []
        for start in range(0, len(indices), run):
            chunk = sorted(indices[start : start + run], key=lambda i: -self.lengths[i])
            batches += [
                chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size)
            ]
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(
            self.seed * 7919 + self.epoch
        )).tolist()  # fmt: skip
        return [i for b in order for i in batches[b]]

    def skip(self, epoch: int, n: int) -> None:
        """Leave out the first `n` samples of `epoch` (once)."""
        self._skip_epoch, self._skip_n = epoch, n

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.lengths is not None:
            indices = self._grouped(indices)
        if self.epoch == self._skip_epoch:
            indices = indices[self._skip_n :]
            self._skip_epoch = -1
        return iter(indices)


class ResumableDataLoader(DataLoader):
    """A DataLoader whose state (epoch, batches processed) goes into Lightning checkpoints.

    ``progress`` returns how many batches of the current epoch the training loop has processed
    (set by `argsfw.fit`; the loader itself cannot tell, as Lightning prefetches a batch).
    """

    progress: Callable[[], int] = staticmethod(lambda: 0)

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches"}``: where the training loop stands in this loader."""
        return {"epoch": int(self.sampler.epoch), "batches": int(self.progress())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Skip the batches of ``state["epoch"]`` that were processed before the checkpoint."""
        # set the epoch now: Lightning creates the resumed epoch's iterator before set_epoch
        self.sampler.set_epoch(state["epoch"])
        self.sampler.skip(state["epoch"], state["batches"] * int(self.batch_size or 1))


def make_resumable(loader: DataLoader, seed: int, lengths=None) -> ResumableDataLoader:
    """Rebuild `loader` (same dataset, batch size, collate_fn, workers) as a resumable loader,
    its batches grouped by `lengths` when given (see `SkippingSampler`).

    Shuffling is kept if `loader` shuffled (a `RandomSampler`). Raises `ValueError` for a loader
    built on a custom batch sampler, which cannot be re-positioned.
    """
    if loader.batch_size is None:
        raise ValueError(
            "make_resumable needs a DataLoader built with batch_size (no batch_sampler)"
        )
    shuffle = isinstance(loader.sampler, (RandomSampler, DistributedSampler)) and getattr(
        loader.sampler, "shuffle", True
    )
    return ResumableDataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=SkippingSampler(
            loader.dataset,
            shuffle=shuffle,
            seed=seed,
            lengths=lengths,
            batch_size=loader.batch_size,
        ),  # fmt: skip
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        persistent_workers=loader.persistent_workers if loader.num_workers else False,
    )


class RNGState(Callback):
    """Saves the Python, NumPy and torch RNG states in every checkpoint and restores them."""

    @property
    def state_key(self) -> str:
        return "argsfw.RNGState"

    def state_dict(self) -> dict[str, Any]:
        """The current RNG states (CPU; CUDA too when present)."""
        state = {
            "python": random.getstate(),
            # plain lists, not arrays: checkpoints load with torch.load(weights_only=True)
            "numpy": _np_state_to_plain(np.random.get_state()),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the RNG states saved by `state_dict`."""
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _np_state_to_plain(state: tuple) -> list:
    kind, keys, pos, has_gauss, gauss = state
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]
