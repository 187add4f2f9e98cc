"""The public API for authors of decoding methods and fit stages: all an author imports.

Built-in methods and stages use the same pieces (`argsfw.decoding.methods`, `argsfw.stages`);
``examples/plugins/my_plugins.py`` uses nothing else. Importing this module is cheap (no torch,
no Lightning): a plug-in imported while a config composes stays fast.

**A decoding method** is a `Method` (name, its knobs' dataclass, what guide it needs, and a
``build`` for the shared per-step loop or a ``run`` for whole sequences), declared as a module
attribute and named ``decode.method=pkg.module:ATTR`` (a built-in: a module in
`argsfw.decoding.methods`). Its knobs are fields made with `knob` (default, one-line doc,
range) and are set like any other, ``decode.<knob>=value``.

``build(parts) -> (scorer, chooser)`` runs once per batch of prompts. ``parts.s`` is the
settings (shared keys and the method's knobs: ``parts.s.weight``), ``parts.decoder`` the
engine, ``parts.stats`` the batch's counters. The guides for those settings:

- `sequence_scorer(parts)`: rewards of candidate next tokens from the sequence RM (the fastest
  scorer the RM's probe verified, or the one ``decode.scorer`` forces);
- `token_scorer(parts)`: a token-level RM (GenARM's ARM, a token head) stepped with the policy;
- `score_sequences(parts, seqs, slots)`: whole sequences or prefixes read by the sequence RM or
  value model as its own Hugging Face forward reads them, each charged to its prompt ``slots[i]``
  (best-of-N and controlled decoding share the prompt's cache instead where the RM allows).

The chooser is called once per step with ``(logits [B, V], scorer, ctx)`` and returns
``(tokens [B], rewards [B] or None)``; ``ctx`` (`StepContext`) holds, for each live row ``j``,
its prompt's index ``ctx.rows[j]``, its prompt ids ``ctx.prompts[j]``, the tokens it generated
so far ``ctx.generated[j]`` and its seeded generator. Lifetime: one chooser and one scorer per
batch, never shared across batches; every token returned is committed; row ``j`` is the
``j``-th row still running, so ``j`` shifts when rows finish while ``ctx.rows[j]`` stays
(see `Chooser` and `Scorer`).

**A fit stage** is a `Stage` (name, its settings dataclass, ``build(job, run) -> StageParts``,
what it makes), named ``stage: pkg.module:ATTR`` in a recipe. For its parts:
`build_reward_model` (an RM backbone with a scalar head, from ``policy=``/``model.base`` or the
tiny model), `build_policy` (a causal LM likewise), `save_model` (a plain Hugging Face
directory marked with its `RewardKind`), `mark_reward_kind` / `reward_kind_of` (what a model is),
`RewardModule` (the pairwise RM LightningModule, to subclass for a new loss) and
`reward_datamodule` (its preference-pair batches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from argsfw.decoding.config import VOCAB, DecodeConfig, decode_settings, knob
from argsfw.decoding.registry import Chooser, Method, Parts, Scorer
from argsfw.decoding.types import DecodeInputError, RewardKind
from argsfw.errors import ConfigError
from argsfw.stages import Stage

if TYPE_CHECKING:
    import torch

# heavy names (torch, Lightning), imported on first use
_LAZY = {
    "StepContext": "argsfw.decoding.search",
    "RowResult": "argsfw.decoding.search",
    "StageParts": "argsfw.modules",
    "RewardModule": "argsfw.modules.reward",
}


__all__ = [
    "VOCAB", "Chooser", "ConfigError", "DecodeConfig", "DecodeInputError", "Method", "Parts",
    "RewardKind", "Scorer", "Stage", "build_policy", "build_reward_model", "decode_settings",
    "knob", "mark_reward_kind", "reward_datamodule", "reward_kind_of", "save_model",
    "score_sequences", "sequence_scorer", "token_scorer", *sorted(_LAZY),
]  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'argsfw.api' has no attribute {name!r}")


# --------------------------------------------------------------------- decoding methods


def sequence_scorer(parts: Parts) -> Scorer | None:
    """The scorer of candidate next tokens by the sequence RM, for these settings; None when the
    engine has no sequence RM. It records its name in the stats (``stats.scorer``)."""
    from argsfw.decoding.probe import build_scorer

    d = parts.decoder
    name = d.scorer_name(parts.s)
    if name is None:
        return None
    parts.stats.scorer = name
    return build_scorer(name, d.scorer_spec, parts.stats, parts.meter.cursors("rm", parts.rows))


def token_scorer(parts: Parts, candidates_only: bool = False) -> Scorer:
    """The token-level RM stepped in lock-step with the policy (one RM token per new token; DPO's
    implicit reward: one token of each of its two models).

    Its ``head`` [B, V] holds every next token's value after each step; ``score(cands [B, k])``
    reads the candidates' (``candidates_only``: only those are computed, when the RM splits
    into backbone and linear head).
    """
    from argsfw.decoding.token_level import token_reward_state

    d, reads = parts.decoder, parts.meter.cursors("rm", parts.rows)
    return token_reward_state(d.rm, parts.stats, d.device, candidates_only, reads)


def score_sequences(parts: Parts, seqs: list[list[int]], slots: list[int]) -> torch.Tensor:
    """Rewards [len(seqs)] of whole sequences (prompt + reply, or a prefix of it) by the sequence
    RM or value model, read as its own forward reads it, each alone (no shared prompt cache).

    ``slots``: the prompt of each sequence (an entry of ``parts.rows``); its RM positions and
    re-reads are charged to that prompt's record by the batch's ledger.
    """
    from argsfw.decoding.methods.best_of_n import score_whole

    return score_whole(parts, seqs, slots)


# --------------------------------------------------------------------- fit stages


def build_reward_model(job) -> tuple[Any, Any, dict]:
    """``(model, tokenizer, meta)``: a ``num_labels=1`` sequence classifier (an RM backbone with a
    new scalar head) from ``model.base`` (or ``policy=`` with ``rm.init_from_policy``), else the
    tiny model. Raises `ModelPathError` / `UsageError` for bad inputs."""
    from argsfw.modules._models import build_reward_model as build

    return build(job)


def build_policy(job) -> tuple[Any, Any, dict]:
    """``(model, tokenizer, meta)``: the causal LM a stage trains, from ``policy=``,
    ``model.base`` or the tiny model (LoRA, top-layer training and checkpointing applied)."""
    from argsfw.modules._models import build_causal_lm

    return build_causal_lm(job)


def reward_datamodule(job, tokenizer, prefix_cuts: int = 0):
    """The preference-pair batches a reward model trains on (`argsfw.data.RMDataModule`):
    chosen and rejected ids and masks, from ``job.data``, ``optim.micro_batch_size`` pairs."""
    from argsfw.data import RMCollator, RMDataModule

    dm = RMDataModule(
        tokenizer, job.data, batch_size=job.optim.micro_batch_size, prefix_cuts=prefix_cuts
    )
    dm.eval_collate_fn = RMCollator(tokenizer, 0)
    return dm


def save_model(model, tokenizer, out_dir, reward_kind: RewardKind | str | None = None) -> None:
    """Save `model` (LoRA merged in) and `tokenizer` as a plain Hugging Face directory; a reward
    model's `RewardKind` goes into its ``config.json`` so decoding knows what it is."""
    from argsfw.modules._models import save_model_dir

    save_model_dir(model, tokenizer, out_dir, reward_kind=reward_kind)


def mark_reward_kind(model, kind: RewardKind | str) -> None:
    """Record what kind of reward model `model` is (``config.argsfw_reward_kind``)."""
    from argsfw.models.reward_kind import mark_reward_kind as mark

    mark(model, kind)


def reward_kind_of(model_or_dir) -> RewardKind | None:
    """The `RewardKind` a model, its config or a model directory declares; None when unmarked."""
    from argsfw.models.reward_kind import reward_kind

    kind = reward_kind(getattr(model_or_dir, "config", model_or_dir))
    return RewardKind(kind) if kind else None
