"""The on-disk frozen-feature store: exact against the model's own forward, shared prompts,
resumable, and keyed so that a changed bottom never reads another's features."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from argsfw.models.features import FeatureStore, bottom_view, fill_pairs
from argsfw.modules._top_layers import FrozenBottomCache, freeze_below_top

PAD = 2  # pad == eos, as SmolLM2


def _rm(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=PAD,
    )  # fmt: skip
    return LlamaForSequenceClassification(cfg).eval()


def _items():
    """Prompts of several lengths, one shared by two pairs, replies of 0..6 tokens; one reply
    contains the pad id itself (pad == eos)."""
    p1, p2, p3 = [5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]
    pairs = [
        (p1, [20, 21, 22], [23]),
        (p2, [24, 25, 26, 27, 28, 29], [30, 31]),
        (p3, [], [32, 33, PAD, 34]),
        (p1, [35, 36], [37, 38, 39]),
    ]
    return [
        {"prompt_len": len(p), "chosen": p + c, "rejected": p + r, "length_rule": 0.5}
        for p, c, r in pairs
    ]


def _hf_states(rm, ids: list[int], split: int) -> torch.Tensor:
    """Reference: the model's own unpadded forward, hidden_states[split]."""
    with torch.no_grad():
        out = rm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[split][0]


def test_fill_pairs_equals_the_models_own_forward_and_shares_prompts(tmp_path):
    rm = _rm()
    cache = FrozenBottomCache(rm, 2, tmp_path)
    items = _items()
    assert cache.fill(items, PAD) == 4
    for it in items:
        for side in ("chosen", "rejected"):
            got = cache.store.get(it[side])
            want = _hf_states(rm, it[side], cache.split)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # three distinct prompts stored once each; seven distinct non-empty replies
    parents = [e for e in cache.store.entries.values() if not e[0]]
    assert len(parents) == 3
    assert len(cache.store) == 3 + 7


def test_the_store_survives_the_process_and_a_killed_pass_resumes(tmp_path):
    rm = _rm()
    cache = FrozenBottomCache(rm, 2, tmp_path)
    items = _items()
    cache.fill(items[:2], PAD)
    # a killed pass leaves a half-written temp file: never read
    (cache.store.root / ".shard-x.safetensors.tmp").write_bytes(b"garbage")
    again = FrozenBottomCache(rm, 2, tmp_path)
    assert again.store.root == cache.store.root and len(again.store) == len(cache.store)
    assert again.fill(items, PAD) == 2  # only the two pairs not stored yet
    third = FrozenBottomCache(rm, 2, tmp_path)
    assert third.fill(items, PAD) == 0
    for it in items:
        torch.testing.assert_close(
            third.store.get(it["rejected"]), _hf_states(rm, it["rejected"], 2), atol=1e-5, rtol=0
        )


def test_the_key_follows_the_bottom_not_the_top(tmp_path):
    rm = _rm()
    base = FrozenBottomCache(rm, 2, tmp_path).fingerprint
    with torch.no_grad():
        rm.model.layers[3].mlp.up_proj.weight.add_(1.0)  # a trained layer: same features
        rm.score.weight.add_(1.0)
    assert FrozenBottomCache(rm, 2, tmp_path).fingerprint == base
    with torch.no_grad():
        rm.model.layers[0].mlp.up_proj.weight[0, 0] += 1e-3  # the bottom changed
    assert FrozenBottomCache(rm, 2, tmp_path).fingerprint != base
    assert FrozenBottomCache(rm, 1, tmp_path).fingerprint != base  # another split layer


def test_a_reward_model_and_a_causal_lm_of_one_checkpoint_share_features(tmp_path):
    import copy

    from transformers import LlamaForCausalLM

    from argsfw.models.features import bottom_fingerprint

    rm = _rm()
    lm = LlamaForCausalLM(copy.deepcopy(rm.config))
    lm.model.load_state_dict(rm.model.state_dict())
    lm.config.pad_token_id, lm.config.tie_word_embeddings = None, True
    fp = lambda m: bottom_fingerprint(m.model, m.model.layers, 2)  # noqa: E731
    assert fp(lm) == fp(rm)
    lm.config.rms_norm_eps = 1e-3  # what the bottom computes: another key
    assert fp(lm) != fp(rm)


def test_rewards_from_the_disk_store_equal_the_models_forward_and_train_the_top(tmp_path):
    rm = _rm()
    freeze_below_top(rm, 2)
    FrozenBottomCache(rm, 2, tmp_path).fill(_items(), PAD)
    cache = FrozenBottomCache(rm, 2, tmp_path)  # a later fit: reads, computes nothing
    rows = [it[s] for it in _items() for s in ("chosen", "rejected")]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    before = len(cache.store)
    got = cache.rewards(ids, mask)
    assert len(cache.store) == before
    want = rm(input_ids=ids, attention_mask=mask).logits[:, 0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    got.sum().backward()
    assert rm.model.layers[3].mlp.up_proj.weight.grad is not None
    assert rm.model.layers[0].mlp.up_proj.weight.grad is None


def test_bottom_view_runs_only_the_bottom():
    rm = _rm()
    view = bottom_view(rm.model, 1)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        got = view(input_ids=ids).last_hidden_state[0]
    torch.testing.assert_close(got, _hf_states(rm, [5, 6, 7], 1), atol=1e-6, rtol=0)
    assert len(rm.model.layers) == 4  # the model itself is untouched


def test_encoder_style_closing_tokens_are_refused(tmp_path):
    items = [{"prompt_len": 2, "suffix_len": 1, "chosen": [5, 6, 7], "rejected": [5, 6, 8]}]
    with pytest.raises(ValueError, match="closing special tokens"):
        fill_pairs({2: FeatureStore(tmp_path)}, _rm().model, items, PAD)


def test_one_pass_fills_several_layers_in_small_batches(tmp_path):
    rm = _rm()
    stores = {1: FeatureStore(tmp_path / "a"), 3: FeatureStore(None)}
    assert fill_pairs(stores, rm.model, _items(), PAD, batch_tokens=5) == 4
    for it in _items():
        for layer, store in stores.items():
            torch.testing.assert_close(
                store.get(it["chosen"]), _hf_states(rm, it["chosen"], layer), atol=1e-5, rtol=0
            )


def test_a_bfloat16_pass_is_close_keyed_apart_and_feeds_an_fp32_top(tmp_path):
    rm = _rm()
    freeze_below_top(rm, 2)
    exact = FrozenBottomCache(rm, 2, tmp_path)
    fast = FrozenBottomCache(rm, 2, tmp_path, compute="bfloat16")
    assert fast.fingerprint != exact.fingerprint and "bfloat16" in fast.fingerprint
    fast.fill(_items(), PAD)
    it = _items()[1]
    got, want = fast.store.get(it["chosen"]), _hf_states(rm, it["chosen"], 2)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=3e-2)
    ids = torch.tensor([it["chosen"]])
    reward = fast.rewards(ids, torch.ones_like(ids))  # also passes the start-up check
    assert reward.dtype == torch.float32
    torch.testing.assert_close(reward, rm(input_ids=ids).logits[:, 0], atol=5e-2, rtol=5e-2)
    with pytest.raises(ValueError, match="feature_dtype"):
        FrozenBottomCache(rm, 2, tmp_path, compute="fp8")
