"""PPO stage assembly: `build(job, run)` loads the policy and reward model into a `PPOModule`.

The actor and the frozen reference start from ``policy=`` (an SFT run), the critic and the
frozen reward model from ``reward_model=`` (an RM run); the two must share one tokenizer. The
prompts come from `argsfw.data.PromptDataModule`; the export writes the trained policy and,
under ``critic/``, the critic. The LightningModule itself is in `argsfw.modules.ppo`.
"""

from __future__ import annotations

import copy
from pathlib import Path

from argsfw.config.run_dir import RunDir
from argsfw.config.schema import JobConfig
from argsfw.errors import UsageError
from argsfw.modules import StageParts
from argsfw.modules._models import load_tokenizer_for, save_model_dir
from argsfw.modules.ppo import PPOModule
from argsfw.stages.ppo import require_inputs


def _check_batches(job: JobConfig, accumulation: int) -> None:
    """Raise `UsageError` unless a rollout splits into whole mini-batches."""
    rows = job.optim.micro_batch_size * accumulation
    if job.ppo.rollout_batch_size % rows:
        raise UsageError(
            f"ppo.rollout_batch_size={job.ppo.rollout_batch_size} is not a multiple of the "
            f"per-device mini-batch optim.batch_size / devices = {rows}"
        )


def load_models(job: JobConfig) -> tuple:
    """(actor, critic, ref, reward_model, tokenizer) from ``policy=`` and ``reward_model=``.

    Raises `UsageError` when the two tokenizers differ (PPO hands token ids from the policy to
    the reward model), `ModelPathError` for a bad path.
    """
    from argsfw.models import check_tokenizer_compat, load_policy, load_reward_model, load_tokenizer

    tokenizer = load_tokenizer_for(job, job.policy)
    rm_tokenizer = load_tokenizer(job.reward_model, "reward model tokenizer")
    names = (f"policy {job.policy}", f"reward model {job.reward_model}")
    compat = check_tokenizer_compat(tokenizer, rm_tokenizer, names)
    if not compat.same:
        raise UsageError(
            f"policy {job.policy!r} and reward model {job.reward_model!r} use different tokenizers "
            f"({'; '.join(compat.differences)}); PPO scores the policy's token ids with the reward "
            "model, so train the reward model with the policy's tokenizer"
        )
    actor = load_policy(job.policy, dtype=job.model.dtype)
    critic = load_reward_model(job.reward_model, dtype=job.model.dtype, tokenizer=tokenizer)
    return actor, critic, copy.deepcopy(actor), copy.deepcopy(critic), tokenizer


def build(job: JobConfig, run: RunDir) -> StageParts:
    """The PPO stage's parts: module, prompt DataModule, export of policy (+ ``critic/``), meta.

    Raises `UsageError` for a missing input, mismatched tokenizers, an unsupported strategy or
    batch sizes that do not divide; `ModelPathError` for a bad model path.
    """
    from argsfw.data import PromptDataModule, tiny_oracle_score
    from argsfw.strategies import world_size

    require_inputs(job)
    accumulation = job.optim.accumulation(world_size(job.trainer))
    _check_batches(job, accumulation)
    actor, critic, ref, reward_model, tokenizer = load_models(job)
    module = PPOModule(
        actor, critic, ref, reward_model, tokenizer, job.ppo, job.optim,
        accumulation=accumulation,
        gradient_clip_val=job.trainer.gradient_clip_val,
        oracle=tiny_oracle_score if job.data.source == "tiny" else None,
        seed=job.seed,
    )  # fmt: skip
    datamodule = PromptDataModule(tokenizer, job.data, batch_size=job.ppo.rollout_batch_size)

    def export(module: PPOModule, out_dir: Path) -> None:
        save_model_dir(module.actor, tokenizer, out_dir)
        save_model_dir(module.critic, tokenizer, out_dir / "critic")

    meta = {
        "kind": "policy",
        "base_model": job.policy,
        "reward_model": job.reward_model,
        "tokenizer": job.model.tokenizer or job.policy,
        "vocab_size": len(tokenizer),
        "max_length": job.data.max_length,
        "max_prompt_length": job.data.max_prompt_length,
        "max_new_tokens": job.ppo.max_new_tokens,
        "critic": "critic/",
    }
    return StageParts(module, datamodule, export, meta)
