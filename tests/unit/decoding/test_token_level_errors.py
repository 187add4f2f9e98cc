"""Bad input for the token-level methods: a one-line DecodeInputError before any decoding."""

from __future__ import annotations

import pytest

from argsfw.decoding import ArgsDecoder, DecodeInputError, decode_settings


def _msg(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("method", ["genarm", "genarm-greedy", "token-rm", "token-rm-stochastic"])
def test_sequence_classifier_where_a_token_level_rm_is_needed(llama, method):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    with pytest.raises(DecodeInputError) as err:
        dec.generate(["hi"], decode_settings(method=method, max_new_tokens=2))
    assert f"decode.method={method} needs" in _msg(err) and "reward_kind 'sequence'" in _msg(err)


@pytest.mark.parametrize("method", ["args-greedy", "args-stochastic", "best-of-n"])
def test_token_level_rm_where_a_sequence_rm_is_needed(llama, method):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.token_rm)
    with pytest.raises(DecodeInputError) as err:
        dec.generate(["hi"], decode_settings(method=method, max_new_tokens=2))
    assert "needs a sequence reward model" in _msg(err) and "token-rm" in _msg(err)


def test_token_level_rm_with_another_vocabulary(llama, tiny_texts):
    from argsfw.models import TinySpec, build_tiny_token_reward_model, train_tokenizer

    other = train_tokenizer(tiny_texts[::2], vocab_size=300)
    rm = build_tiny_token_reward_model(other, TinySpec(max_position_embeddings=128), 5)
    with pytest.raises(DecodeInputError) as err:
        ArgsDecoder(llama.llm, llama.tokenizer, rm)
    assert "head has" in _msg(err) and "policy's vocabulary" in _msg(err)
    same_size = build_tiny_token_reward_model(llama.tokenizer, TinySpec(), 5)
    with pytest.raises(DecodeInputError, match="needs the policy's tokenizer"):
        ArgsDecoder(llama.llm, llama.tokenizer, same_size, _shuffled(llama.tokenizer))


def _shuffled(tok):
    """A tokenizer of the same size whose ids differ (two tokens swapped)."""
    import copy
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    a, b = list(vocab)[10], list(vocab)[11]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    out = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        **copy.deepcopy(tok.special_tokens_map),
    )
    return out


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(method="genarm", alpha=float("nan")), "alpha must be a number > -1, got nan"),
        (dict(method="genarm-greedy", alpha=float("inf")), "alpha must be a number > -1"),
        (dict(method="genarm", alpha=-1.0), "alpha must be a number > -1"),
        (dict(method="token-rm", weight=float("-inf")), "weight must be any finite number"),
        (dict(method="token-rm-stochastic", temperature=0.0), "temperature must be a number > 0"),
        (dict(method="token-rm", topk=0), "topk must be an integer"),
    ],
)
def test_bad_settings(llama, kw, match):
    rm = llama.arm if kw["method"].startswith("genarm") else llama.token_rm
    with pytest.raises(DecodeInputError, match=match) as err:
        ArgsDecoder(llama.llm, llama.tokenizer, rm).generate(["hi"], decode_settings(**kw))
    _msg(err)


def test_token_level_methods_need_a_reward_model(llama):
    dec = ArgsDecoder(llama.llm, llama.tokenizer)
    with pytest.raises(DecodeInputError, match="genarm with alpha=1.0 needs a reward model"):
        dec.generate(["hi"], decode_settings(method="genarm"))
    gens, _ = dec.generate(["hi"], decode_settings(method="token-rm", weight=0.0, max_new_tokens=2))
    assert gens[0].n_new_tokens == 2


@pytest.mark.parametrize("method,rm_name", [("genarm-greedy", "arm"), ("token-rm", "token_rm")])
def test_non_finite_rm_head_names_the_step(llama, method, rm_name):
    import copy

    import torch

    from argsfw.decoding import NonFiniteRewardError

    rm = copy.deepcopy(getattr(llama, rm_name))
    with torch.no_grad():
        rm.get_output_embeddings().weight[7:9] = float("nan")
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm)
    with pytest.raises(NonFiniteRewardError, match="at step 1 for prompt 0") as err:
        dec.generate(["hi"], decode_settings(method, topk=400, max_new_tokens=2, lenient=True))
    _msg(err)
