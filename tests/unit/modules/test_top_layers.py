"""model.train_top_layers and model.cache_frozen: what is frozen, and the cached rewards equal the model's own forward."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForSequenceClassification,
    OPTConfig,
    OPTForSequenceClassification,
)

from argsfw.modules._top_layers import FrozenBottomCache, freeze_below_top


def _llama_rm(pad=2):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=pad,
    )  # fmt: skip
    return LlamaForSequenceClassification(cfg).eval()


def _batch(pad=2):
    """Right-padded rows; one ends in the pad id itself (pad == eos), read one token earlier."""
    rows = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, pad], [17, 18, 19, 20, 21]]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def test_freeze_keeps_top_layers_norm_and_head():
    rm = _llama_rm()
    trainable, total = freeze_below_top(rm, 2)
    names = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert all(
        n.startswith(("model.layers.2.", "model.layers.3.", "model.norm", "score")) for n in names
    )
    assert "score.weight" in names and "model.norm.weight" in names
    assert any(n.startswith("model.layers.2.") for n in names)
    assert not any(n.startswith(("model.layers.1.", "model.embed_tokens")) for n in names)
    assert 0 < trainable < total
    with pytest.raises(ValueError, match="has 4 layers"):
        freeze_below_top(_llama_rm(), 5)


def test_cached_rewards_equal_the_models_forward_and_train_the_top():
    rm = _llama_rm()
    freeze_below_top(rm, 2)
    ids, mask = _batch()
    cache = FrozenBottomCache(rm, 2)
    want = rm(input_ids=ids, attention_mask=mask).logits[:, 0]
    got = cache.rewards(ids, mask)
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert len(cache) == 4
    # a re-batched, re-padded second epoch reads the store and still matches
    order = torch.tensor([2, 0])
    sub_ids, sub_mask = ids[order][:, :6], mask[order][:, :6]
    assert torch.allclose(cache.rewards(sub_ids, sub_mask), want[order], atol=1e-5)
    assert len(cache) == 4
    # gradients reach the top layers and the head, never the frozen bottom
    cache.rewards(ids, mask).sum().backward()
    assert (
        rm.score.weight.grad is not None and rm.model.layers[3].mlp.up_proj.weight.grad is not None
    )
    assert rm.model.layers[0].mlp.up_proj.weight.grad is None


def test_models_that_add_positions_to_the_inputs_are_caught():
    """OPT adds learned positions to inputs_embeds: the cached path differs, and the stage's
    start-up check (RewardModule) sees that. Here: the difference is real."""
    torch.manual_seed(0)
    cfg = OPTConfig(
        vocab_size=64, hidden_size=32, ffn_dim=64, num_hidden_layers=4, num_attention_heads=4,
        num_labels=1, pad_token_id=1, word_embed_proj_dim=32,
    )  # fmt: skip
    rm = OPTForSequenceClassification(cfg).eval()
    freeze_below_top(rm, 2)
    ids, mask = _batch(pad=1)
    from argsfw.errors import UsageError

    try:
        cache = FrozenBottomCache(rm, 2)
    except ValueError as exc:  # a stack in a sub-module is refused up front
        assert "model.cache_frozen" in str(exc)
        return
    with pytest.raises(UsageError, match="model.cache_frozen"):
        cache.rewards(ids, mask)
