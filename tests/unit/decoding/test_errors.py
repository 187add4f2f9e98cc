"""Bad input fails at once with a one-line ValueError that says what is wrong."""

from __future__ import annotations

import copy

import pytest
import torch

from argsfw.decoding import (
    ArgsDecoder,
    DecodeInputError,
    NonFiniteRewardError,
    PromptTooLongError,
    UnknownMethodError,
    decode_settings,
)


@pytest.fixture
def dec(llama):
    return ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, ValueError)
    return msg


def test_empty_prompt(dec):
    with pytest.raises(DecodeInputError) as err:
        dec.generate_ids([[5, 6], []], decode_settings(max_new_tokens=2))
    assert "prompt 1 is empty" in _one_line(err)
    # "" with a BOS-adding tokenizer is the BOS token alone: generation from scratch, as in the
    # original README's example
    gens, _ = dec.generate([""], decode_settings(max_new_tokens=2, weight=1.0, topk=2))
    assert gens[0].prompt_ids == [dec.tokenizer.bos_token_id] and gens[0].n_new_tokens == 2


def test_prompt_longer_than_context(dec, llama):
    long = "\n\nHuman: What is the capital of France? " * 20  # ~200 tokens, context 128
    with pytest.raises(PromptTooLongError) as err:
        dec.generate([long], decode_settings(max_new_tokens=8))
    msg = _one_line(err)
    assert "context is 128" in msg and "truncate_prompt" in msg
    gens, _ = dec.generate([long], decode_settings(max_new_tokens=8, topk=2, truncate_prompt=True))
    g = gens[0]
    assert g.n_prompt_tokens == 128 - 8 and g.prompt_ids[0] == llama.tokenizer.bos_token_id
    assert g.prompt_ids[1:] == llama.tokenizer(long).input_ids[-(128 - 8 - 1) :]
    with pytest.raises(PromptTooLongError, match="max_new_tokens alone"):
        dec.generate(["hi"], decode_settings(max_new_tokens=200, truncate_prompt=True))


@pytest.mark.parametrize("k", [0, -1, 401, 10**6])
def test_topk_out_of_range(dec, k):
    with pytest.raises(DecodeInputError) as err:
        dec.generate(["hi"], decode_settings(topk=k))
    assert "topk must be an integer in [1, 400]" in _one_line(err)


def test_unknown_method_lists_valid_ones(dec):
    with pytest.raises(UnknownMethodError) as err:
        dec.generate(["hi"], decode_settings(method="beam"))
    msg = _one_line(err)
    for name in ("args-greedy", "args-stochastic", "args-greedy-large", "nucleus", "best-of-n"):
        assert name in msg


def test_original_spellings_accepted(dec):
    a, _ = dec.generate(
        ["hi"], decode_settings(method="greedy_large", chunk_size=2, topk=3, max_new_tokens=3)
    )
    b, _ = dec.generate(["hi"], decode_settings(method="args-greedy", topk=3, max_new_tokens=3))
    assert a[0].new_ids == b[0].new_ids


def test_non_finite_reward_names_the_step(llama):
    rm = copy.deepcopy(llama.rm)
    with torch.no_grad():
        rm.score.weight.fill_(float("nan"))
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm)
    with pytest.raises(NonFiniteRewardError) as err:
        dec.generate(["hi", "Human: hello"], decode_settings(topk=3, max_new_tokens=4))
    assert "at step 1 for prompt" in _one_line(err)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(chunk_size="big", method="args-greedy-large"), "chunk_size"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(batch_size=0), "batch_size"),
        (dict(method="nucleus", top_p=0.0), "top_p"),
        (dict(method="args-stochastic", temperature=0.0), "temperature"),
        (dict(weight=float("nan")), "weight"),
        (dict(method="best-of-n", num_samples=0), "num_samples"),
    ],
)
def test_bad_settings(dec, kw, match):
    with pytest.raises(DecodeInputError, match=match):
        dec.generate(["hi"], decode_settings(**kw))


def test_reward_methods_need_a_reward_model(llama):
    dec = ArgsDecoder(llama.llm, llama.tokenizer)
    with pytest.raises(DecodeInputError, match="needs a reward model"):
        dec.generate(["hi"], decode_settings(method="args-greedy", weight=1.0))
    gens, _ = dec.generate(["hi"], decode_settings(method="greedy", max_new_tokens=2))
    assert gens[0].n_new_tokens == 2


def test_a_string_is_not_a_prompt_list(dec):
    with pytest.raises(DecodeInputError, match="list of strings"):
        dec.generate("hi", decode_settings())


def test_unusable_reward_model(llama):
    with pytest.raises(DecodeInputError, match="score"):
        ArgsDecoder(llama.llm, llama.tokenizer, llama.llm.model)  # a backbone with no head at all
    # a causal LM is a (token-level) RM the ARGS methods cannot use: refused before decoding
    with pytest.raises(DecodeInputError, match="needs a sequence reward model"):
        ArgsDecoder(llama.llm, llama.tokenizer, llama.llm).generate(["hi"], decode_settings())
