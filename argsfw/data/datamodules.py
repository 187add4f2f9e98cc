"""Lightning DataModules for the three kinds of batches: SFT, reward-model pairs, prompts.

Each DataModule takes a tokenizer and a `DataConfig`, loads through `load_pairs` /
`load_prompts`, tokenizes once in ``setup`` (so truncation is counted once, not per epoch)
and leaves distribution to Lightning: plain DataLoaders, which Lightning wraps in a
``DistributedSampler`` under DDP (and an unrepeated one for predict). Shuffling uses a
generator seeded from ``cfg.seed``, so a single-process run is deterministic too.

Validation data: the part carved out of ``cfg.split`` when ``cfg.val_fraction > 0``, else
``cfg.eval_split``. Predict data: ``cfg.eval_split``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import lightning as L
import torch
from torch.utils.data import DataLoader

from argsfw.data.collators import (
    PromptCollator,
    RMCollator,
    SFTCollator,
    TruncationCounts,
    tokenize_prompts,
    tokenize_rm,
    tokenize_sft,
)
from argsfw.data.config import DataConfig
from argsfw.data.loading import VALIDATION, load_pairs_with_stats, load_prompts_with_stats
from argsfw.data.types import DataError, DataStats
from argsfw.rlhf.length_rule import length_rule_correct

log = logging.getLogger(__name__)


class ListDataset(torch.utils.data.Dataset):
    """Pre-tokenized examples held in memory (the corpora here are small enough)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _BaseDataModule(L.LightningDataModule):
    """Shared plumbing: which split serves which stage, loading, counting, loaders."""

    def __init__(
        self, tokenizer, cfg: DataConfig, batch_size: int = 8, eval_batch_size: int | None = None
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.datasets: dict[str, ListDataset] = {}
        self.stats: dict[str, DataStats] = {}  # per split: read / kept / dropped
        self.truncation: dict[str, TruncationCounts] = {}  # per split: cut to fit
        self.collate_fn: Callable[[list[dict]], dict] = lambda x: x

    @property
    def val_split(self) -> str:
        """The split validation uses: the carved one when ``val_fraction > 0``, else ``eval_split``."""
        return VALIDATION if self.cfg.val_fraction > 0 else self.cfg.eval_split

    def _splits(self, stage: str | None) -> list[str]:
        if stage in (None, "fit"):
            return [self.cfg.split, self.val_split]
        if stage == "validate":
            return [self.val_split]
        return [self.cfg.eval_split]  # test, predict

    def _build(self, split: str) -> tuple[list[dict], DataStats, TruncationCounts]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Load and tokenize the splits `stage` needs (once; later calls reuse them)."""
        for split in self._splits(stage):
            if split in self.datasets:
                continue
            items, stats, trunc = self._build(split)
            if not items:
                raise DataError(
                    f"data split {split!r} of source {self.cfg.source!r} is empty after selection ({stats})"
                )
            self.datasets[split], self.stats[split], self.truncation[split] = (
                ListDataset(items),
                stats,
                trunc,
            )
            log.info("%s; truncated %s", stats, trunc.as_dict())

    def _loader(self, split: str, shuffle: bool, collate_fn: Callable | None = None) -> DataLoader:
        if split not in self.datasets:
            self.setup("fit" if split in (self.cfg.split, self.val_split) else "predict")
        generator = torch.Generator().manual_seed(self.cfg.seed) if shuffle else None
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=collate_fn or self.collate_fn,
            num_workers=self.cfg.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of ``cfg.split``."""
        return self._loader(self.cfg.split, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Batches of `val_split`, in order."""
        return self._loader(self.val_split, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Batches of ``cfg.eval_split``, in order."""
        return self._loader(self.cfg.eval_split, shuffle=False)

    def lengths(self, split: str) -> list[int]:
        """Each example's padded length in a batch (what `data.group_by_length` groups by)."""
        return [
            max(len(v) for v in item.values() if isinstance(v, list))
            for item in self.datasets[split].items
        ]

    def summary(self) -> dict[str, dict]:
        """Counts per split (read, kept, dropped per reason, truncated), JSON-ready for run meta."""
        return {
            s: {**self.stats[s].as_dict(), "truncated": self.truncation[s].as_dict()}
            for s in self.stats
        }


class SFTDataModule(_BaseDataModule):
    """Batches ``input_ids``/``attention_mask``/``labels`` [B, T] of prompt + response + EOS.

    ``target="both"`` trains on chosen and rejected replies; labels are -100 on prompt
    tokens unless ``loss_on_prompt``. Raises ValueError for an unknown target.
    """

    def __init__(
        self,
        tokenizer,
        cfg: DataConfig,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        target: str = "chosen",
        loss_on_prompt: bool = False,
    ):
        super().__init__(tokenizer, cfg, batch_size, eval_batch_size)
        if target not in ("chosen", "both"):
            raise ValueError(f"unknown SFT target {target!r}; choose chosen or both")
        self.target, self.loss_on_prompt = target, loss_on_prompt
        self.collate_fn = SFTCollator(tokenizer)

    def _build(self, split: str) -> tuple[list[dict], DataStats, TruncationCounts]:
        pairs, stats = load_pairs_with_stats(self.cfg, split, self.tokenizer)
        items, trunc = tokenize_sft(
            self.tokenizer,
            pairs,
            self.cfg.max_length,
            self.cfg.max_prompt_length,
            self.target,
            self.loss_on_prompt,
        )
        return items, stats, trunc


class RMDataModule(_BaseDataModule):
    """Batches of chosen / rejected sequences for pairwise reward-model training (see `RMCollator`)."""

    def __init__(
        self,
        tokenizer,
        cfg: DataConfig,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        prefix_cuts: int = 0,
        add_eos: bool = False,
    ):
        super().__init__(tokenizer, cfg, batch_size, eval_batch_size)
        self.add_eos = add_eos  # DPO: the reply's EOS is part of the completion it scores
        self.collate_fn = RMCollator(tokenizer, prefix_cuts)
        self.eval_collate_fn = RMCollator(tokenizer, 0)  # validation accuracy on whole responses

    def _build(self, split: str) -> tuple[list[dict], DataStats, TruncationCounts]:
        pairs, stats = load_pairs_with_stats(self.cfg, split, self.tokenizer)
        items, trunc = tokenize_rm(
            self.tokenizer, pairs, self.cfg.max_length, self.cfg.max_prompt_length, self.add_eos
        )
        # the length-by-domain baseline's verdict on each pair, reported beside the model's
        rule = length_rule_correct(
            [len(p.chosen) for p in pairs],
            [len(p.rejected) for p in pairs],
            [p.domain for p in pairs],
        )
        for item, verdict in zip(items, rule):
            item["length_rule"] = verdict
        return items, stats, trunc

    def _loader(self, split: str, shuffle: bool, collate_fn: Callable | None = None) -> DataLoader:
        return super()._loader(
            split, shuffle, collate_fn or (None if shuffle else self.eval_collate_fn)
        )


class PromptDataModule(_BaseDataModule):
    """Left-padded prompt batches (``input_ids``, ``attention_mask``, ``ids``, ``prompts``).

    Train batches (PPO rollouts) come from ``cfg.split``, predict batches from
    ``cfg.eval_split``; `skip_ids` removes prompts a resumed predict run already answered.
    """

    def __init__(
        self,
        tokenizer,
        cfg: DataConfig,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        skip_ids: Iterable[str] = (),
    ):
        super().__init__(tokenizer, cfg, batch_size, eval_batch_size)
        self.skip_ids = set(skip_ids)
        self.collate_fn = PromptCollator(tokenizer)

    def _build(self, split: str) -> tuple[list[dict], DataStats, TruncationCounts]:
        records, stats = load_prompts_with_stats(self.cfg, split, self.tokenizer)
        if self.skip_ids:
            before = len(records)
            records = [r for r in records if r.id not in self.skip_ids]
            stats.flag("already_done", before - len(records))
        items, trunc = tokenize_prompts(self.tokenizer, records, self.cfg.max_prompt_length)
        return items, stats, trunc

    def setup(self, stage: str | None = None) -> None:
        """Like the base, but a resumed predict run with every prompt done is not an error."""
        if stage == "predict" and self.skip_ids and self.cfg.eval_split not in self.datasets:
            items, stats, trunc = self._build(self.cfg.eval_split)
            self.datasets[self.cfg.eval_split] = ListDataset(items)
            self.stats[self.cfg.eval_split], self.truncation[self.cfg.eval_split] = stats, trunc
            return
        super().setup(stage)

    def predict_dataloader(self) -> DataLoader:
        """Prompts of ``cfg.eval_split`` in dataset order."""
        return self._loader(self.cfg.eval_split, shuffle=False)
