"""Typed containers and errors shared by the decoding engine.

Everything the engine hands back is plain data: a `Generation` per prompt (ids as Python lists
so it serialises to JSON as is) and the errors, all `ValueError` subclasses with one-line
messages that name the offending value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RewardKind(str, Enum):
    """What a guide (reward) model is; a decoding method needs one kind, a fit stage makes one.

    A ``str`` enum: ``RewardKind.TOKEN == "token"``, and its value is what ``meta.json``
    (``reward_kind``) and ``config.json`` (``argsfw_reward_kind``) hold.
    """

    SEQUENCE = (
        "sequence"  # a scalar reward of a whole sequence (AutoModelForSequenceClassification)
    )
    ARM = "arm"  # GenARM's autoregressive RM: a causal LM whose reply log-likelihood is the reward
    TOKEN = "token"  # a causal LM whose vocabulary head holds each next token's reward
    VALUE = "value"  # a prefix value model V(x, y_<=t): a sequence classifier read on prefixes
    # DPO's implicit reward beta * (log pi_dpo - log pi_ref) per token: a DPO run and its reference
    IMPLICIT = "implicit"

    @property
    def causal_lm(self) -> bool:
        """True for the token-level kinds, loaded as causal LMs (stepped in lock-step with the policy)."""
        return self in (RewardKind.ARM, RewardKind.TOKEN, RewardKind.IMPLICIT)

    @property
    def token_head(self) -> bool:
        """True for the kinds read from one causal LM's next-token head (GenARM's ARM, a token
        head): what an unmarked causal LM is taken for, and what DPO's implicit reward also serves."""
        return self in (RewardKind.ARM, RewardKind.TOKEN)

    @property
    def read_as(self) -> RewardKind:
        """The kind a model of this kind serves: a value model is read as a sequence RM."""
        return RewardKind.SEQUENCE if self is RewardKind.VALUE else self

    def __str__(self) -> str:
        return self.value


class DecodeInputError(ValueError):
    """Bad decoding input: empty or over-long prompt, bad k, unknown method, unusable models."""


class UnknownMethodError(DecodeInputError):
    """A decoding method name that is not registered (`argsfw.decoding.registry`)."""


class PromptTooLongError(DecodeInputError):
    """A prompt (plus the tokens to generate) does not fit a model's context window."""


class NonFiniteRewardError(ValueError):
    """The reward model returned NaN or inf for a candidate during the search."""


@dataclass
class Generation:
    """One prompt's decoding result.

    ``prompt_ids`` [T_p] are the prompt tokens the policy read (after any left-truncation),
    ``new_ids`` [T_n] the generated tokens (the EOS token included when ``finished``),
    ``text`` the continuation decoded with ``skip_special_tokens=True``. ``reward`` is the reward
    model's score of the whole final sequence when the method computed it for free (ARGS
    methods with a non-zero weight score the chosen candidate at the last step; best-of-n
    scores every sample; genarm sums the ARM's ``log pi_r(y_t | x, y_<t)``, its reward of the
    response; token-rm reads the head value of the last token), else None.

    Cost of this prompt alone, whatever batch it shared: ``llm_tokens`` / ``rm_tokens`` are
    the real (non-padding) token positions the policy / reward model computed for it, prompt
    included (best-of-n: the prompt once, every sample's tokens, every sample scored);
    padding, which depends on the batch, is only in the call's `DecodeStats`.
    ``llm_reread`` / ``rm_reread``: of those positions, the ones an earlier forward of this
    prompt's search had already computed (the same token prefix; see
    `argsfw.decoding.accounting.PrefixLedger`). ``llm_flops`` / ``rm_flops``: the forward FLOPs
    of those positions (`argsfw.decoding.accounting.FlopSpec.flops`).
    ``scored_steps`` counts the steps whose candidates the RM scored (reward-guided methods
    only, else None).
    """

    index: int
    prompt: str
    prompt_ids: list[int]
    new_ids: list[int]
    text: str
    finished: bool
    reward: float | None = None
    llm_tokens: int = 0
    rm_tokens: int = 0
    scored_steps: int | None = None
    llm_reread: int = 0
    rm_reread: int = 0
    llm_flops: float = 0.0
    rm_flops: float = 0.0

    @property
    def n_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_new_tokens(self) -> int:
        return len(self.new_ids)

    @property
    def ids(self) -> list[int]:
        """Prompt and continuation, the original API's output row."""
        return self.prompt_ids + self.new_ids

    def as_dict(self) -> dict:
        """JSON-ready record (ids as lists, counts included)."""
        return {
            "index": self.index,
            "prompt": self.prompt,
            "text": self.text,
            "prompt_ids": self.prompt_ids,
            "new_ids": self.new_ids,
            "n_prompt_tokens": self.n_prompt_tokens,
            "n_new_tokens": self.n_new_tokens,
            "finished": self.finished,
            "reward": self.reward,
            "llm_tokens": self.llm_tokens,
            "rm_tokens": self.rm_tokens,
            "scored_steps": self.scored_steps,
            "llm_reread": self.llm_reread,
            "rm_reread": self.rm_reread,
            "llm_flops": self.llm_flops,
            "rm_flops": self.rm_flops,
        }
