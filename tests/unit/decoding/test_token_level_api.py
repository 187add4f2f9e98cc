"""`ARGS(..., rm_path=<token-level RM>).generate(method="genarm" | "token-rm")` on saved tiny models."""

from __future__ import annotations

import pytest
import torch

from argsfw.decoding import DecodeInputError, decode_settings


@pytest.fixture(scope="module")
def searchers(tiny_kit, token_kit):
    from argsfw import ARGS

    return {
        name: ARGS(llm_path=tiny_kit["policy"], rm_path=token_kit[name], llm_dev="cpu")
        for name in ("arm", "token", "unmarked")
    }


TEXT = "\n\nHuman: Tell me a joke.\n\nAssistant:"


def test_reward_kind_is_read_from_config_meta_and_architecture(tiny_kit, token_kit):
    from argsfw.models.reward_kind import is_causal_lm_config, reward_kind

    assert reward_kind(token_kit["arm"]) == "arm"  # config.json attribute
    assert reward_kind(token_kit["token"]) == "token"  # meta.json beside the weights
    assert reward_kind(token_kit["unmarked"]) is None and is_causal_lm_config(token_kit["unmarked"])
    assert reward_kind(tiny_kit["reward_model"]) == "sequence"  # *ForSequenceClassification
    assert not is_causal_lm_config(tiny_kit["reward_model"])


@pytest.mark.parametrize(
    "rm,method,kw",
    [
        ("arm", "genarm", dict(alpha=1.0, temperature=0.5)),
        ("arm", "genarm-greedy", dict(alpha=2.0)),
        ("token", "token-rm", dict(weight=1.5, topk=5)),
        ("token", "token-rm-stochastic", dict(weight=1.5, topk=5, temperature=0.7)),
        ("unmarked", "token-rm", dict(weight=1.0, topk=5)),
    ],
)
def test_generate_with_a_token_level_rm_equals_the_engine(searchers, rm, method, kw):
    s = searchers[rm]
    out = s.generate(TEXT, method=method, max_new_token=6, **kw)
    prompt_ids = s.tokenizer(TEXT).input_ids
    assert out.dtype == torch.long and out[0, : len(prompt_ids)].tolist() == prompt_ids
    st = s.last_stats
    assert st.method == method and st.new_tokens == out.shape[1] - len(prompt_ids)
    assert st.rm_forwards == st.llm_forwards  # one RM forward per policy forward
    gens, _ = s.decoder.generate([TEXT], decode_settings(method=method, max_new_tokens=6, **kw))
    assert out[0].tolist() == gens[0].ids
    batch = s.generate([TEXT, "Hi"], method=method, max_new_token=6, **kw)
    assert batch[0].tolist() == out.tolist()


def test_args_methods_refuse_a_token_level_rm(searchers):
    with pytest.raises(DecodeInputError, match="needs a sequence reward model") as err:
        searchers["token"].generate(TEXT, method="greedy", weight=1.0, topk=4, max_new_token=2)
    assert "\n" not in str(err.value)
    # weight 0 reads no RM: fine
    searchers["token"].generate(TEXT, method="greedy", weight=0.0, topk=4, max_new_token=2)


def test_genarm_and_token_rm_refuse_each_others_rm(searchers):
    with pytest.raises(DecodeInputError, match="reward_kind 'token'"):
        searchers["token"].generate(TEXT, method="genarm-greedy", max_new_token=2)
    with pytest.raises(DecodeInputError, match="reward_kind 'arm'"):
        searchers["arm"].generate(TEXT, method="token-rm", weight=1.0, topk=3, max_new_token=2)
