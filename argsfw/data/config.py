"""Schema of a data source (the ``data`` config group). Plain, OmegaConf-compatible dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Where preference pairs or prompts come from and how they are cut and tokenized."""

    # tiny | hh_rlhf | dahoas | shp | json | trl (TRL's standard and conversational formats)
    source: str = "tiny"
    path: str | None = None  # local file / dir / glob, or a hub dataset id; unused for tiny
    split: str = "train"  # split to read for training (predict/evaluate use eval_split)
    eval_split: str = "test"  # split used for validation during fit, and for prompts in predict
    # json / trl sources: field names if not the usual {prompt, chosen, rejected, id}
    fields: dict[str, str] = field(default_factory=dict)
    val_fraction: float = 0.0  # carve a validation set out of `split` when the source has none
    # [lo, hi): keep only training records whose seeded prompt hash is in this range (the carve
    # takes hashes below val_fraction): disjoint shards train, e.g., a guide RM and a judge RM
    shard: list[float] | None = None
    # [lo, hi) within [val_fraction, 1]: validate on the training records whose prompt hash lies
    # here (they leave training) instead of the held-out carve: a dev set for choosing a recipe
    # that never reads the held-out pairs
    val_shard: list[float] | None = None
    limit: int | None = None  # at most this many records (after offset)
    offset: int = 0  # skip this many records first
    run_percent: float | None = None  # first X% of the records, as the original collect script
    max_length: int = 512  # tokens of prompt + response; longer examples are truncated and counted
    max_prompt_length: int = 256  # prompt tokens kept (left-truncated) when a prompt is too long
    # raw: prompts as the dataset writes them (Human:/Assistant:); chat: rendered with the
    # tokenizer's chat template (argsfw.data.chat), for instruction-tuned models
    prompt_format: str = "raw"
    seed: int = 0  # for the tiny corpus and any shuffling
    # fit: batches of similar lengths (shuffled in runs of 50 batches), so padding stays small
    group_by_length: bool = False
    num_workers: int = 0  # DataLoader worker processes
