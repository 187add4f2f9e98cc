"""Decoding guided by a token-level reward model: one RM token per generated token.

ARGS reads k candidate tokens through a sequence RM every step. A token-level RM is a causal LM
whose next-token head already scores every vocabulary entry, so one cached one-token forward per
step, in lock-step with the policy, gives the reward of all candidates at once:

- **GenARM** (Xu et al., ICLR 2025). The ARM pi_r is a causal LM whose response log-likelihood
  is the reward. Decoding samples from ``pi_base * pi_r^alpha``. Their inference code builds the
  formula ``M_base + alpha * M_arm`` with language-model-arithmetic, whose terms are
  log-softmaxed next-token distributions and whose ``Sum`` divides by the sum of coefficients
  and renormalises (``src/model_arithmetic/operators.py``, ``Operator.normalize``), then samples
  at ``temperature / (1 + alpha)`` (their README; the HH script says "set to 1 / (1 + alpha) to
  sample from pi_decode with temperature=1"). So the next-token logits here are
  ``(log_softmax(base) + alpha * log_softmax(arm)) / (1 + alpha)``, sampled at ``temperature``
  (``genarm``) or argmax-ed (``genarm-greedy``). The division only matters when sampling.
- **token-rm** (FaRMA, Rashid et al., ICML 2025): ``r(x, y_<t, v) = head(x, y_<t)[v]``, raw head
  values, used in the ARGS rule ``logit(v) + w * r`` over the policy's top-k (greedy or
  stochastic, exactly `ArgsChooser`). FaRMA's own test script ranks the whole vocabulary by
  ``logit + w * r``; argsfw keeps ARGS's candidate set so token-rm differs from ARGS only in
  where r comes from.

The RM is stepped with `PolicyState` (left padding, per-row positions, its own KV cache, rows
dropped as they finish); its forwards count as ``rm_forwards`` / ``rm_tokens_in``: the padded
prompt once, then one token per generated token (none after a row's last token).

token-rm needs the head at k candidates only, so when the RM splits into backbone + linear head
(checked once per model against its own forward, `split_head`), it runs the backbone and
computes ``hidden @ W[candidates]``: k dot products instead of a vocabulary-wide matmul, which
for a small RM with a large vocabulary is a good part of its step.
"""

from __future__ import annotations

import logging
import weakref

import torch

from argsfw.decoding.accounting import DecodeStats, RowCursors, cache_bytes
from argsfw.decoding.policy import PolicyState
from argsfw.decoding.sampling import sample_rows
from argsfw.decoding.search import StepContext, check_finite
from argsfw.decoding.types import DecodeInputError, RewardKind

log = logging.getLogger("argsfw.decoding")


def guide_kind(rm) -> RewardKind | None:
    """The `RewardKind` a loaded guide model is read as: ``SEQUENCE`` for a scalar-head
    classifier, else the causal LM's marked kind (``ARM``, ``TOKEN``, ``IMPLICIT`` for DPO's
    implicit reward), or None when it is unmarked. A model with neither head is ``SEQUENCE`` too, so the sequence scorer's own check
    names what is wrong with it."""
    from argsfw.models.reward_kind import reward_kind

    if (
        isinstance(getattr(rm, "score", None), torch.nn.Module)
        or getattr(rm, "get_output_embeddings", lambda: None)() is None
    ):
        return RewardKind.SEQUENCE
    kind = reward_kind(rm.config)
    return RewardKind(kind) if kind is not None and RewardKind(kind).causal_lm else None


def token_reward_state(
    rm, stats: DecodeStats, out_device, candidates_only: bool = False, reads=None
):
    """The lock-step state of a token-level guide: a `TokenRewardState`, or for DPO's implicit
    reward (`argsfw.decoding.implicit.ImplicitReward`) an `ImplicitRewardState`."""
    from argsfw.decoding.implicit import ImplicitReward, ImplicitRewardState

    if isinstance(rm, ImplicitReward):
        return ImplicitRewardState(rm, stats, out_device, reads)
    return TokenRewardState(rm, stats, out_device, candidates_only, reads)


_UNMARKED_LOGGED: set[str] = set()  # methods already warned about an unmarked causal-LM RM


def check_guide_kind(method, kind: str | None) -> None:
    """Refuse a reward model of the wrong kind for ``method`` (a registry `Method`, one line);
    log an unmarked causal LM."""
    from argsfw.models.reward_kind import kind_error

    reason = kind_error(method, kind)
    if reason:
        raise DecodeInputError(reason)
    if kind is None and method.name not in _UNMARKED_LOGGED:
        _UNMARKED_LOGGED.add(method.name)
        log.warning(
            "the reward model is a causal LM without an argsfw reward_kind marker; %s reads it as %s",
            method.name,
            "an autoregressive RM (log-softmax of its head)"
            if method.needs is RewardKind.ARM
            else "a token-level RM (raw head values)",
        )


def check_token_rm_vocab(llm, rm, llm_tokenizer, rm_tokenizer) -> None:
    """Refuse a token-level RM whose vocabulary differs from the policy's (head size or tokenizer).

    Raises:
        DecodeInputError: naming both sizes or the tokenizer differences.
    """
    v_llm = llm.get_output_embeddings().weight.shape[0]
    v_rm = rm.get_output_embeddings().weight.shape[0]
    if v_llm != v_rm:
        raise DecodeInputError(
            f"the token-level reward model's head has {v_rm} entries but the policy's has {v_llm}: "
            "a token-level RM scores the policy's own tokens, so it needs the policy's vocabulary"
        )
    if rm_tokenizer is not None and rm_tokenizer is not llm_tokenizer:
        from argsfw.models import check_tokenizer_compat

        compat = check_tokenizer_compat(llm_tokenizer, rm_tokenizer)
        if not compat.same:
            raise DecodeInputError(
                f"policy and token-level reward model {compat}: a token-level RM needs the policy's tokenizer"
            )


_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@torch.inference_mode()
def split_head(rm) -> tuple[torch.nn.Module, torch.nn.Linear] | None:
    """``(backbone, lm_head)`` when ``lm_head(backbone(x).last_hidden_state)`` is ``rm(x).logits``, else None.

    Checked once per model on a 3-token input (not counted in any call's stats), so models
    whose forward does more after the head (logit scaling, soft-capping) keep the full path.
    """
    if rm in _SPLITS:
        return _SPLITS[rm]
    backbone = getattr(rm, getattr(rm, "base_model_prefix", ""), None)
    head = rm.get_output_embeddings()
    split = None
    if isinstance(backbone, torch.nn.Module) and type(head) is torch.nn.Linear:
        device = head.weight.device
        x = torch.tensor([[1, 2, 3]], device=device) % head.weight.shape[0]
        full = rm(input_ids=x).logits[0, -1].float()
        part = head(backbone(input_ids=x).last_hidden_state[0, -1]).float()
        scale = 1 + float(full.nan_to_num(0.0, 0.0, 0.0).abs().max())
        if torch.allclose(full, part, rtol=1e-3, atol=1e-3 * scale, equal_nan=True):
            split = (backbone, head)
    _SPLITS[rm] = split
    return split


class TokenRewardState:
    """A token-level RM decoding in lock-step with the policy; follows the scorer protocol of `decode_batch`.

    ``head`` [B, V] (float32, policy device) is the RM's next-token head for every live row,
    ready when the chooser runs (full mode). With ``candidates_only`` (token-rm, when
    `split_head` allows) only the last hidden state [B, H] is kept and `score` applies the head
    to the candidates. ``total`` [B] accumulates ``log_softmax(head)`` of the chosen tokens
    (GenARM's reward of the sequence so far).
    """

    def __init__(
        self,
        rm,
        stats: DecodeStats,
        out_device: torch.device,
        candidates_only: bool = False,
        reads: RowCursors | None = None,
    ):
        self.rm, self.stats, self.out_device, self.reads = rm, stats, out_device, reads
        self.rm_device = next(rm.parameters()).device
        self.split = split_head(rm) if candidates_only else None
        self.state: PolicyState | None = None
        self.head: torch.Tensor | None = None
        self.hidden: torch.Tensor | None = None
        self.total: torch.Tensor | None = None

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts) -> None:
        """Read the (left-padded) prompts ``ids``/``mask`` [B, T] once."""
        ids, mask = ids.to(self.rm_device), mask.to(self.rm_device)
        model, head = (self.split[0], False) if self.split is not None else (self.rm, True)
        self.state = PolicyState(
            model, ids, mask, self.stats, role="rm", head=head, reads=self.reads
        )
        self._set(self.state.prefill())
        self.total = torch.zeros(ids.shape[0], device=self.out_device)

    def commit(self, tokens: torch.Tensor) -> None:
        """Append the chosen ``tokens`` [B] and read the next head."""
        self._set(self.state.step(tokens))

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` [B'] of the batch."""
        self.state.keep(rows)
        if self.split is not None:
            self.hidden = self.hidden[rows.to(self.hidden.device)]
        else:
            self.head = self.head[rows.to(self.head.device)]
        self.total = self.total[rows.to(self.total.device)]

    def score(self, cands: torch.Tensor, chunk_size=None) -> torch.Tensor:
        """Rewards [B, k] (float32) of candidate tokens ``cands`` [B, k]: the raw head values (token-rm)."""
        if self.split is None:
            return self.head.gather(1, cands.to(self.head.device))
        lm_head = self.split[1]
        c = cands.to(self.rm_device)
        w = lm_head.weight[c]  # [B, k, H]
        r = torch.einsum("bh,bkh->bk", self.hidden, w)  # [B, k]
        if lm_head.bias is not None:
            r = r + lm_head.bias[c]
        return r.float().to(self.out_device)

    def _set(self, out: torch.Tensor) -> None:
        if self.split is not None:
            self.hidden = out  # [B, H], RM device and dtype
        else:
            self.head = out.to(self.out_device)
        self.stats.rm_cache_bytes_peak = max(
            self.stats.rm_cache_bytes_peak, cache_bytes(self.state.cache)
        )


class GenARMChooser:
    """One GenARM step over the whole vocabulary: argmax, or a sample at ``temperature``.

    With ``alpha=0`` (or no RM) the policy's own logits are used unchanged, so greedy equals
    plain greedy exactly. ``n_tokens`` (the tokenizer's length) limits both distributions to
    real tokens: a head padded past the tokenizer (e.g. to a multiple of 64) has rows that no
    text maps to, and normalising over them would give them probability. Returns the chosen
    tokens and each row's ARM reward so far, ``sum_t log pi_r(y_t | x, y_<t)``.
    """

    def __init__(
        self, alpha: float, greedy: bool, temperature: float = 1.0, n_tokens: int | None = None
    ):
        self.alpha, self.greedy, self.temperature = alpha, greedy, temperature
        self.n_tokens = n_tokens

    def _real_tokens(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` [B, V] with the padded columns (>= n_tokens) at -inf: no probability."""
        if self.n_tokens is None or self.n_tokens >= scores.shape[-1]:
            return scores
        return scores.float().index_fill(
            -1, torch.arange(self.n_tokens, scores.shape[-1], device=scores.device), float("-inf")
        )

    def __call__(self, logits: torch.Tensor, scorer, ctx: StepContext):
        logits = self._real_tokens(logits)
        if scorer is None or self.alpha == 0:
            mixed = logits
        else:
            vocab = torch.arange(scorer.head.shape[-1], device=scorer.head.device)
            check_finite(scorer.head, vocab.expand_as(scorer.head), ctx)
            arm = self._real_tokens(scorer.head).log_softmax(-1)  # [B, V] log pi_r
            mixed = (logits.log_softmax(-1) + self.alpha * arm) / (1 + self.alpha)
        if self.greedy:
            tokens = mixed.argmax(-1)
        else:
            tokens = sample_rows((mixed / self.temperature).softmax(-1), ctx.generators)
        if scorer is None or self.alpha == 0:
            return tokens, None
        scorer.total = scorer.total + arm.gather(1, tokens[:, None])[:, 0]
        return tokens, scorer.total
