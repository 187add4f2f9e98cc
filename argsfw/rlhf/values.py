"""Per-token values from a ``num_labels=1`` sequence classifier: the critic's V(s_t), the RM's scores."""

from __future__ import annotations

import torch

from argsfw.errors import UsageError


def value_head(model: torch.nn.Module) -> torch.nn.Module:
    """The scalar head (``score``) of a ``num_labels=1`` sequence classifier.

    Raises `UsageError` for a model class without a ``score`` head.
    """
    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Module):
        raise UsageError(
            f"{type(model).__name__} has no 'score' head; PPO needs an "
            "AutoModelForSequenceClassification reward model (Llama, OPT, GPT-2, Mistral …)"
        )
    return head


def token_values(model: torch.nn.Module, ids, mask, positions) -> torch.Tensor:
    """The scalar head applied at every position: ``[B, T]`` (float32).

    For the reward model, position ``i`` is the score of the prefix ending at token ``i`` (what
    its sequence-classification forward returns for that prefix); for the critic it is V(s_i).
    """
    hidden = model.base_model(
        input_ids=ids, attention_mask=mask, position_ids=positions
    ).last_hidden_state  # [B, T, H]
    return value_head(model)(hidden).squeeze(-1).float()
