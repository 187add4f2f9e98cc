"""What the token-level reward stages (`arm`, `token_rm`) share: inputs, batches, export.

Both train a causal LM, initialised from a causal LM (usually the SFT policy, so they share its
tokenizer and decode with it), on preference pairs, and export it as a plain HF causal-LM
directory that says which kind of reward model it is: ``meta.json`` has ``reward_kind`` and
``config.json`` the attribute ``argsfw_reward_kind`` (``"arm"`` | ``"token"``), so a vanilla
``transformers`` directory carries it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from argsfw.config.schema import JobConfig
from argsfw.errors import UsageError
from argsfw.modules._models import base_source, save_model_dir


def architectures(spec: str, what: str) -> list[str] | None:
    """The ``architectures`` of a model input's config.json, or None for a hub id (not read).

    Raises `ModelPathError` for a missing or unusable local path.
    """
    from argsfw.models.paths import resolve_model_path

    path = Path(resolve_model_path(spec, what))
    if not (path / "config.json").is_file():  # a hub id: transformers checks it on load
        return None
    return list(json.loads((path / "config.json").read_text()).get("architectures") or [])


def check_causal_lm_init(job: JobConfig) -> None:
    """Refuse a sequence classifier as the initial model of a token-level RM (before loading).

    Raises `UsageError` naming the input and the fix.
    """
    source = base_source(job)
    if not source:
        return
    archs = architectures(source, "policy")
    if archs and any(a.endswith("ForSequenceClassification") for a in archs):
        raise UsageError(
            f"stage {job.stage} starts from a causal LM, but {source!r} is a sequence classifier "
            f"({archs[0]}); pass policy=<SFT run dir> (e.g. runs/tiny_sft)"
        )


def export_reward_lm(model, tokenizer, out_dir: Path, kind: str) -> None:
    """Save a token-level RM as a plain HF causal LM (LoRA merged) tagged with `kind`."""
    save_model_dir(model, tokenizer, out_dir, reward_kind=kind)


class PairCollator:
    """`argsfw.data.RMCollator` batches of whole pairs, plus what token-level losses need.

    Adds ``chosen_response_mask``/``rejected_response_mask`` [N, T] (1 on response tokens) and
    ``chosen_last``/``rejected_last`` [N] (index of each row's last real token, at least 1).
    """

    def __init__(self, tokenizer):
        from argsfw.data import RMCollator

        self.base = RMCollator(tokenizer, prefix_cuts=0)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.base(features)
        prompt_len = torch.tensor([f["prompt_len"] for f in features])  # [N]
        batch["prompt_len"] = prompt_len
        for side in ("chosen", "rejected"):
            mask = batch[f"{side}_attention_mask"]  # [N, T], right padded
            cols = torch.arange(mask.shape[1])[None]
            batch[f"{side}_response_mask"] = mask * (cols >= prompt_len[:, None]).long()
            batch[f"{side}_last"] = (mask.sum(1) - 1).clamp(min=1)
        return batch


def pair_datamodule(job: JobConfig, tokenizer, add_eos: bool = False):
    """An `argsfw.data.RMDataModule` of whole pairs collated by `PairCollator` (train and eval);
    `add_eos` ends every reply with the tokenizer's EOS (DPO's completions)."""
    from argsfw.data import RMDataModule

    datamodule = RMDataModule(
        tokenizer, job.data, batch_size=job.optim.micro_batch_size, add_eos=add_eos
    )
    datamodule.collate_fn = datamodule.eval_collate_fn = PairCollator(tokenizer)
    return datamodule


def both_sides(batch: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """``chosen_<key>`` and ``rejected_<key>`` stacked along the batch: [2N, ...]."""
    return torch.cat([batch[f"chosen_{key}"], batch[f"rejected_{key}"]])
