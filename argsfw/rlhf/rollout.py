"""Typed containers for PPO rollouts: what one sampling pass produces and one PPO epoch reads.

Shapes: ``B`` rollout rows (prompts), ``P`` prompt positions (left-padded), ``R`` response
positions (right-padded after the first EOS), ``T = P + R``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Rollout:
    """One batch of sampled responses with everything the PPO losses need, all detached.

    Token tensors:
        input_ids       ``[B, T]`` prompt (left-padded) + response (right-padded)
        attention_mask  ``[B, T]`` 1 on real prompt tokens and on response tokens up to EOS
        position_ids    ``[B, T]`` positions counted over real tokens (left padding aware)
        response_mask   ``[B, R]`` 1 on response tokens up to and including the first EOS
    Per response token (index ``t`` is the ``t``-th generated token):
        logprobs        ``[B, R]`` log π_old(a_t | s_t) of the actor that sampled
        ref_logprobs    ``[B, R]`` log π_ref(a_t | s_t) of the frozen reference
        values          ``[B, R]`` V_old(s_t) of the critic before the update
        rewards         ``[B, R]`` per-token reward: -β·KL_t, plus the RM score on the last token
        advantages      ``[B, R]`` GAE advantages (whitened when configured)
        returns         ``[B, R]`` value targets: GAE advantages (not whitened) + values
    Per row:
        scores          ``[B]`` reward-model score of prompt + response
        kl              ``[B]`` summed per-token KL estimate of the row (nats)
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: torch.Tensor
    kl: torch.Tensor

    @property
    def prompt_length(self) -> int:
        """``P``: number of prompt positions (the response starts at this index)."""
        return self.input_ids.size(1) - self.response_mask.size(1)

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def index(self, rows: torch.Tensor) -> Rollout:
        """The sub-rollout of the given row indices (``[b]`` long tensor)."""
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def minibatches(self, size: int, generator: torch.Generator | None = None) -> Iterator[Rollout]:
        """Shuffled sub-rollouts of `size` rows each (the last one may be smaller).

        Raises `ValueError` for a non-positive `size`.
        """
        if size <= 0:
            raise ValueError(f"minibatch size must be positive, got {size}")
        order = torch.randperm(len(self), generator=generator).to(self.input_ids.device)
        for start in range(0, len(self), size):
            yield self.index(order[start : start + size])


def response_mask_after_eos(response: torch.Tensor, eos_token_id: int | list[int]) -> torch.Tensor:
    """``[B, R]`` mask that is 1 up to and including each row's first EOS token, 0 after it.

    Rows with no EOS keep every position (the response was cut at ``max_new_tokens``).
    """
    eos = torch.as_tensor(eos_token_id, device=response.device).view(-1)
    is_eos = torch.isin(response, eos).long()  # [B, R]
    # why: a position is inside the response when no EOS occurred strictly before it
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos
    return (eos_before == 0).long()


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` position ids counting only real tokens, as `generate` uses for left padding.

    Padding positions get 0 (they are masked out of attention anyway).
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
