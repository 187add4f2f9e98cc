"""PPO stage: an actor, a critic, a frozen reference and a frozen reward model, manually optimised.

Each training batch is a batch of left-padded prompts. `PPOModule.training_step` runs the three
phases of one PPO iteration (Ouyang et al. 2022, following Ziegler et al. 2019):

1. `generate_rollout` — sample responses from the actor; score prompt + response with the reward
   model; per-token KL to the reference becomes a penalty ``-β·KL_t``; GAE gives advantages
   (whitened) and returns from the critic's values. Everything is detached.
2. `ppo_step` — ``ppo.ppo_epochs`` passes over the rollout in shuffled mini-batches of
   ``optim.micro_batch_size × accumulation`` rows; clipped policy loss for the actor, clipped
   value loss for the critic, summed into one loss per micro-batch; ONE optimizer (actor and
   critic parameter groups, each with its own learning rate) and one schedule, stepped by hand.
3. `log_metrics` — ``ppo/reward``, ``ppo/kl``, ``ppo/entropy``, ``ppo/clip_frac``,
   ``ppo/value_loss``, ``ppo/policy_loss``, ``ppo/kl_coef`` …; then the KL controller updates.

Validation decodes the validation prompts *greedily* with the actor and, once, with the
reference (the SFT policy), and logs ``val/reward`` and ``val/ref_reward`` (mean RM score), and
on the tiny corpus ``val/oracle`` / ``val/ref_oracle`` (the ground-truth oracle).

Lightning's ``global_step`` counts optimizer steps: one rollout advances it by
``ppo_epochs × mini-batches per rollout`` (``trainer.max_steps`` counts the same steps).

Distributed (DDP, DeepSpeed ZeRO-2): every rank samples its own prompts; gradients accumulate
locally over a mini-batch's micro-batches and are synchronised once per optimizer step
(`PPOModule._gradient_sync`). The frozen models are in no optimizer, DDP bucket, ZeRO partition
or checkpoint (see `PPOModule`).

The stage assembly (`build(job, run)`: loading the models, the prompt data, the export) is in
`argsfw.modules.ppo_stage`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator

import lightning as L
import torch
from lightning.pytorch.strategies import ParallelStrategy

from argsfw.config.schema import OptimConfig
from argsfw.modules._frozen import FrozenModels
from argsfw.modules._optim import actor_critic_adamw, total_optimizer_steps
from argsfw.rlhf.gae import gae
from argsfw.rlhf.kl import KLController, kl_estimate, token_rewards
from argsfw.rlhf.ppo import ppo_policy_loss, ppo_value_loss
from argsfw.rlhf.rollout import Rollout, positions_from_mask, response_mask_after_eos
from argsfw.rlhf.stats import entropy_from_logits, gather_logprobs, masked_mean, masked_whiten
from argsfw.rlhf.values import token_values, value_head  # noqa: F401 - re-exported
from argsfw.stages.ppo import PPOConfig

log = logging.getLogger(__name__)

FROZEN = ("ref.", "reward_model.")  # their state-dict prefixes in checkpoints of older versions
KL_STATE_KEY = "argsfw.ppo.kl_controller"
# why: PPOModule keeps its models in eval mode on purpose (see PPOModule.train)
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")


class PPOModule(FrozenModels, L.LightningModule):
    """PPO of a causal-LM `actor` against `reward_model`, with a `critic` and a frozen `ref`.

    `actor` and `ref` are ``AutoModelForCausalLM``; `critic` and `reward_model` are
    ``num_labels=1`` ``AutoModelForSequenceClassification`` (the critic starts as a copy of the
    reward model: its body plus its scalar head, read at every token). Batches are left-padded
    prompts ``input_ids``/``attention_mask`` ``[B, P]`` (see `argsfw.data.PromptCollator`).

    Only `actor` and `critic` are registered children; `ref` and `reward_model` sit in a plain
    tuple, out of DDP, DeepSpeed and checkpoints; `_apply` moves and casts them with the module.
    """

    def __init__(
        self,
        actor: torch.nn.Module,
        critic: torch.nn.Module,
        ref: torch.nn.Module,
        reward_model: torch.nn.Module,
        tokenizer,
        ppo: PPOConfig,
        optim: OptimConfig,
        accumulation: int = 1,
        gradient_clip_val: float | None = 1.0,
        oracle=None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.actor, self.critic = actor, critic
        self.hold_frozen(ref, reward_model)
        self.tokenizer, self.ppo, self.optim = tokenizer, ppo, optim
        self.accumulation, self.gradient_clip_val = accumulation, gradient_clip_val
        self.oracle = oracle  # (prompt, response) -> float, the tiny corpus' ground truth
        self.seed = seed
        self.kl_ctl = KLController(ppo.kl_coef, ppo.adaptive_kl, ppo.target_kl, ppo.kl_horizon)
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self._ref_val: dict[int, tuple[float, float | None, int]] = {}  # batch -> ref scores

    ref = property(lambda self: self.frozen(0), doc="The frozen reference (SFT) policy.")
    reward_model = property(lambda self: self.frozen(1), doc="The frozen reward model.")

    def train(self, mode: bool = True) -> PPOModule:
        """Keep every model in eval mode, whatever Lightning asks.

        Why: dropout would make the first PPO epoch's ratio differ from 1 and the frozen models
        non-deterministic (TRL disables dropout for PPO likewise); OPT applies dropout
        functionally, so zeroing ``nn.Dropout`` modules would not be enough.
        """
        super().train(mode)
        for model in (self.actor, self.critic, self.ref, self.reward_model):
            model.eval()
        return self

    # --- rollout ---------------------------------------------------------------------------

    def _sample(self, model, batch: dict, greedy: bool) -> torch.Tensor:
        """Generate from `model`: ``[B, P + R]`` token ids (post-EOS positions hold junk/pad)."""
        from transformers import GenerationConfig

        p = self.ppo
        sampling = dict(do_sample=True, temperature=p.temperature, top_k=p.top_k or None, top_p=1.0)
        config = GenerationConfig(
            max_new_tokens=p.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            **({"do_sample": False} if greedy else sampling),
        )
        from argsfw.strategies import zero_stage

        return model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            generation_config=config,
            # ZeRO-3 gathers parameters collectively: ranks must step until the last one is done
            synced_gpus=self._trainer is not None and zero_stage(self.trainer.strategy) == 3,
        )

    def _logprobs(self, model, ids, mask, positions, response_len: int):
        """Log-probs and entropies of the response tokens under `model`: two ``[B, R]``.

        Logits are divided by the sampling temperature, so the log-probs are those of the
        distribution the tokens were drawn from (top-k truncation aside).
        """
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            logits_to_keep=response_len + 1,
        ).logits[:, :-1]  # [B, R, V]: position P-1+t predicts response token t
        logits = logits.float() / self.ppo.temperature
        return gather_logprobs(logits, ids[:, -response_len:]), entropy_from_logits(logits)

    @staticmethod
    def _at_score_positions(per_token: torch.Tensor, response_mask, is_eos, prompt_len: int):
        """``[B]``: `per_token` at each row's last response token that is not EOS.

        The reward model was trained on prompt + response without EOS, so that is the position
        whose score it learnt (the last prompt token for an empty response).
        """
        n_words = (response_mask * (1 - is_eos)).sum(1)  # [B]
        index = prompt_len - 1 + n_words
        return per_token.gather(1, index.unsqueeze(1)).squeeze(1)

    @torch.no_grad()
    def generate_rollout(self, batch: dict) -> tuple[Rollout, torch.Tensor]:
        """Sample, score and compute advantages for one prompt batch.

        Returns the detached `Rollout` and the mean per-token entropy of the actor on it.
        """
        prompt_len = batch["input_ids"].size(1)
        sequences = self._sample(self.actor, batch, greedy=False)  # [B, P + R]
        response = sequences[:, prompt_len:]  # [B, R]
        response_mask = response_mask_after_eos(response, self.eos_id)  # [B, R]
        mask = torch.cat([batch["attention_mask"].long(), response_mask], dim=1)  # [B, T]
        ids = sequences.masked_fill(mask == 0, self.pad_id)
        positions = positions_from_mask(mask)
        r_len = response.size(1)
        logprobs, entropy = self._logprobs(self.actor, ids, mask, positions, r_len)
        ref_logprobs, _ = self._logprobs(self.ref, ids, mask, positions, r_len)
        values = token_values(self.critic, ids, mask, positions)[:, prompt_len - 1 : -1]  # [B, R]
        is_eos = (response == self.eos_id).long()
        rm_tokens = token_values(self.reward_model, ids, mask, positions)  # [B, T]
        scores = self._at_score_positions(rm_tokens, response_mask, is_eos, prompt_len)  # [B]
        kl = kl_estimate(logprobs, ref_logprobs, self.ppo.kl_estimator) * response_mask
        rewards = token_rewards(scores, kl, response_mask, self.kl_ctl.coef)
        advantages, returns = gae(rewards, values, response_mask, self.ppo.gamma, self.ppo.lam)
        if self.ppo.whiten_advantages:
            advantages = masked_whiten(advantages, response_mask) * response_mask
        rollout = Rollout(
            ids, mask, positions, response_mask, logprobs, ref_logprobs, values, rewards,
            advantages, returns, scores, kl.sum(1),
        )  # fmt: skip
        return rollout, masked_mean(entropy, response_mask)

    # --- optimisation ----------------------------------------------------------------------

    def _losses(self, mb: Rollout):
        """Policy and value losses of one micro-batch under the current actor and critic."""
        r_len = mb.response_mask.size(1)
        logprobs, _ = self._logprobs(
            self.actor, mb.input_ids, mb.attention_mask, mb.position_ids, r_len
        )
        values = token_values(self.critic, mb.input_ids, mb.attention_mask, mb.position_ids)
        values = values[:, mb.prompt_length - 1 : -1]  # [b, R]
        policy = ppo_policy_loss(
            logprobs, mb.logprobs, mb.advantages, mb.response_mask, self.ppo.clip_range
        )
        value = ppo_value_loss(
            values, mb.values, mb.returns, mb.response_mask, self.ppo.clip_range_value
        )
        return policy, value

    @contextlib.contextmanager
    def _gradient_sync(self, last: bool) -> Iterator[None]:
        """Around one micro-batch's backward: sync gradients across ranks only if `last`.

        DDP: Lightning's `block_backward_sync` (``no_sync``) on all but the last micro-batch,
        whose backward all-reduces the accumulated gradients. DeepSpeed (Lightning sets its
        gradient accumulation to 1 for manual optimisation): the engine's documented
        `set_gradient_accumulation_boundary`, so one ``step`` follows several backwards.
        """
        from argsfw.strategies import is_deepspeed

        strategy = self.trainer.strategy
        if is_deepspeed(strategy):
            # not block_backward_sync: its duck-typed check takes the engine for DDP, and the
            # engine's no_sync refuses ZeRO-2/3 (which reduce during every backward)
            strategy.model.set_gradient_accumulation_boundary(last)
            yield
        elif last or not isinstance(strategy, ParallelStrategy):  # one process: nothing to sync
            yield
        else:
            with strategy.block_backward_sync():
                yield

    def ppo_step(self, rollout: Rollout) -> dict[str, float]:
        """``ppo_epochs`` passes of shuffled mini-batches; returns the mean loss statistics.

        One optimizer step per mini-batch (actor and critic together): the micro-batches'
        summed losses are back-propagated one by one (gradients accumulate), synced once.
        """
        opt = self.optimizers()
        scheduler = self.lr_schedulers()
        micro = self.optim.micro_batch_size
        sums: dict[str, float] = {}
        n = 0
        for _ in range(self.ppo.ppo_epochs):
            for minibatch in rollout.minibatches(micro * self.accumulation):
                opt.zero_grad()
                starts = range(0, len(minibatch), micro)
                for start in starts:
                    mb = minibatch.index(torch.arange(start, min(start + micro, len(minibatch))))
                    with self._gradient_sync(last=start == starts[-1]):
                        policy, value = self._losses(mb)
                        # actor and critic share no parameters: one backward fills both gradients
                        loss = policy.loss + self.ppo.vf_coef * value.loss
                        self.manual_backward(loss / self.accumulation)
                    for key, v in (
                        ("policy_loss", policy.loss), ("value_loss", value.loss),
                        ("clip_frac", policy.clip_frac), ("approx_kl", policy.approx_kl),
                        ("value_clip_frac", value.clip_frac),
                    ):  # fmt: skip
                        sums[key] = sums.get(key, 0.0) + float(v.detach())
                    n += 1
                if self.gradient_clip_val:  # a no-op under DeepSpeed: its engine clips (setup)
                    self.clip_gradients(opt, self.gradient_clip_val, "norm")
                opt.step()
                scheduler.step()
        return {k: v / max(n, 1) for k, v in sums.items()}

    def _step_seed(self) -> int:
        """A seed that depends only on (seed, rank, global step)."""
        return (self.seed * 1_000_003 + self.global_rank) * 1_000_003 + self.global_step

    def training_step(self, batch: dict, batch_idx: int) -> None:
        # why a private RNG per step: sampling and shuffling then depend only on (seed, rank,
        # step), so a resumed run repeats the uninterrupted one exactly, whatever else (data
        # loader start-up, checkpoint restore) consumed the global RNG in between
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._step_seed())
            rollout, entropy = self.generate_rollout(batch)
            coef = self.kl_ctl.coef
            stats = self.ppo_step(rollout)
        # every rank must move β identically: feed the controller the KL averaged over ranks
        kl = float(self.trainer.strategy.reduce(rollout.kl.mean(), reduce_op="mean"))
        self.kl_ctl.update(kl, n_steps=len(rollout) * self.trainer.world_size)
        self.log_metrics(rollout, entropy, coef, stats)

    def log_metrics(self, rollout: Rollout, entropy, kl_coef: float, stats: dict) -> None:
        """Log one PPO iteration under the shared ``ppo/`` names (per step)."""
        lrs = self.lr_schedulers().get_last_lr()  # one per parameter group, actor's first
        metrics = {
            "ppo/reward": rollout.scores.mean(),  # RM score of the samples (before the KL term)
            "ppo/objective": (rollout.scores - kl_coef * rollout.kl).mean(),
            "ppo/kl": rollout.kl.mean(),  # summed per-token estimate, nats per response
            "ppo/entropy": entropy,
            "ppo/kl_coef": kl_coef,
            "ppo/response_length": rollout.response_mask.sum(1).float().mean(),
            "ppo/lr": lrs[0],  # the actor's learning rate (its first parameter group)
            "ppo/critic_lr": lrs[-1],
            **{f"ppo/{k}": v for k, v in stats.items()},
        }
        self.log("ppo/reward", metrics.pop("ppo/reward"), prog_bar=True, batch_size=len(rollout))
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(rollout))

    # --- validation ------------------------------------------------------------------------

    @torch.no_grad()
    def _greedy_scores(self, model, batch: dict) -> tuple[torch.Tensor, float | None]:
        """Mean RM score ``[B]`` of `model`'s greedy responses, and their mean oracle score."""
        prompt_len = batch["input_ids"].size(1)
        sequences = self._sample(model, batch, greedy=True)
        response = sequences[:, prompt_len:]
        response_mask = response_mask_after_eos(response, self.eos_id)
        mask = torch.cat([batch["attention_mask"].long(), response_mask], dim=1)
        ids = sequences.masked_fill(mask == 0, self.pad_id)
        per_token = token_values(self.reward_model, ids, mask, positions_from_mask(mask))
        is_eos = (response == self.eos_id).long()
        scores = self._at_score_positions(per_token, response_mask, is_eos, prompt_len)
        oracle = None
        if self.oracle is not None and "prompts" in batch:
            texts = self.tokenizer.batch_decode(response * response_mask, skip_special_tokens=True)
            oracle = sum(map(self.oracle, batch["prompts"], texts)) / len(texts)
        return scores, oracle

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        scores, oracle = self._greedy_scores(self.actor, batch)
        if batch_idx not in self._ref_val:  # the reference is frozen: decode it once per batch
            ref_scores, ref_oracle = self._greedy_scores(self.ref, batch)
            self._ref_val[batch_idx] = (float(ref_scores.mean()), ref_oracle, len(ref_scores))
        ref_reward, ref_oracle, _ = self._ref_val[batch_idx]
        kw = dict(on_epoch=True, sync_dist=True, batch_size=len(scores))
        self.log("val/reward", scores.mean(), prog_bar=True, **kw)
        self.log("val/ref_reward", ref_reward, **kw)
        if oracle is not None:
            self.log("val/oracle", oracle, **kw)
            self.log("val/ref_oracle", ref_oracle, **kw)

    # --- optimizers and checkpoints --------------------------------------------------------

    def _optimizer_steps(self) -> int:
        """Optimizer steps this fit will take (for the schedule); ``global_step`` counts them."""
        if self.trainer.max_steps > 0:
            return int(self.trainer.max_steps)
        rows_per_step = self.optim.micro_batch_size * self.accumulation
        per_rollout = self.ppo.ppo_epochs * math.ceil(self.ppo.rollout_batch_size / rows_per_step)
        # not estimated_stepping_batches: it builds the train loader before a resumed run
        # restores the loader's position (see argsfw.modules._optim.total_optimizer_steps)
        return total_optimizer_steps(self.trainer) * per_rollout

    def configure_optimizers(self):
        """One AdamW over actor and critic parameter groups, one schedule (`actor_critic_adamw`)."""
        return actor_critic_adamw(
            self.actor, self.critic, self.optim, self.ppo.critic_lr, self._optimizer_steps()
        )

    def setup(self, stage: str) -> None:
        """Under DeepSpeed, hand ``trainer.gradient_clip_val`` to the engine's config.

        Why: `clip_gradients` is a no-op under DeepSpeed (the engine clips by its config's
        ``gradient_clipping``), and manual optimisation leaves the Trainer's clip value unset.
        """
        from argsfw.strategies import is_deepspeed

        strategy = self.trainer.strategy
        if is_deepspeed(strategy) and isinstance(strategy.config, dict):
            strategy.config.setdefault("gradient_clipping", float(self.gradient_clip_val or 0.0))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the KL controller (the frozen models are not in the state dict: see class doc)."""
        checkpoint[KL_STATE_KEY] = self.kl_ctl.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the KL controller; drop frozen weights a checkpoint of an older version holds."""
        if KL_STATE_KEY in checkpoint:
            self.kl_ctl.load_state_dict(checkpoint[KL_STATE_KEY])
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(FROZEN)]:
            del state[key]
