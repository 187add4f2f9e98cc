"""args-gated against ARGS-greedy (τ = 1), greedy (τ = 0) and the slow gated reference (τ between)."""

from __future__ import annotations

import pytest

from argsfw.decoding import ArgsDecoder, decode_settings, reference_decode
from argsfw.decoding.types import DecodeInputError

S = dict(weight=1.5, topk=5, max_new_tokens=10, stop_at_eos=False)


def _gen(m, prompts, **kw):
    dec = ArgsDecoder(m.llm, m.tokenizer, m.rm)
    return dec.generate(prompts, decode_settings(lenient=True, **{**S, **kw}))


def test_tau_one_is_args_greedy_and_tau_zero_is_greedy(models, prompts):
    """Same tokens and, at τ = 1, the same RM work; at τ = 0 the RM is never called."""
    args, st_args = _gen(models, prompts, method="args-greedy", batch_size=4)
    one, st_one = _gen(models, prompts, method="args-gated", gate_threshold=1.0, batch_size=4)
    assert [g.new_ids for g in one] == [g.new_ids for g in args]
    assert [g.rm_tokens for g in one] == [g.rm_tokens for g in args]
    assert st_one.rm_tokens_in == st_args.rm_tokens_in
    assert all(g.scored_steps == g.n_new_tokens for g in one)
    greedy, _ = _gen(models, prompts, method="greedy", batch_size=4)
    zero, st_zero = _gen(models, prompts, method="args-gated", gate_threshold=0.0, batch_size=4)
    assert [g.new_ids for g in zero] == [g.new_ids for g in greedy]
    assert st_zero.rm_forwards == 0 and all(g.rm_tokens == 0 == g.scored_steps for g in zero)


def _median_tau(m, prompts):
    """A threshold that makes roughly half the greedy steps unsure on these models."""
    import torch

    ps = []
    for p in prompts:
        ids = m.tokenizer(p).input_ids
        for _ in range(6):
            with torch.no_grad():
                logits = m.llm(input_ids=torch.tensor([ids])).logits[0, -1]
            ps.append(float(logits.softmax(-1).max()))
            ids.append(int(logits.argmax()))
    return sorted(ps)[len(ps) // 2]


def test_intermediate_tau_equals_the_gated_reference_batched(models, prompts):
    """Mixed prompt lengths in one batch and batch 1 both equal the slow reference, row by row;
    the RM reads a row's prompt, its k candidates per scored step and the tokens it deferred."""
    tau = _median_tau(models, prompts)
    batched, _ = _gen(models, prompts, method="args-gated", gate_threshold=tau, batch_size=4)
    single, _ = _gen(models, prompts, method="args-gated", gate_threshold=tau, batch_size=1)
    dec = ArgsDecoder(models.llm, models.tokenizer, models.rm)
    scored = []
    for g, one in zip(batched, single):
        ref, _ = reference_decode(
            models.llm, models.rm, g.prompt_ids, weight=1.5, topk=5, max_new_tokens=10,
            eos_ids=tuple(dec.eos_ids), gate_threshold=tau,
        )  # fmt: skip
        assert g.new_ids == ref == one.new_ids, g.index
        assert g.rm_tokens == one.rm_tokens and g.scored_steps == one.scored_steps
        scored.append(g.scored_steps)
    assert 0 < sum(scored) < sum(g.n_new_tokens for g in batched)  # the gate did both


def test_skipped_steps_cost_no_rm_tokens(llama, prompts):
    """Per row: prompt + k per scored step + the deferred tokens read at a later scored step."""
    tau = _median_tau(llama, prompts)
    gens, stats = _gen(llama, prompts, method="args-gated", gate_threshold=tau, batch_size=4)
    import torch

    for g in gens:
        ids, flags = list(g.prompt_ids), []
        for tok in g.new_ids:
            with torch.no_grad():
                logits = llama.llm(input_ids=torch.tensor([ids])).logits[0, -1]
            flags.append(float(logits.softmax(-1).max()) <= tau)
            ids.append(tok)
        if not any(flags):
            assert g.rm_tokens == 0
            continue
        last = max(i for i, f in enumerate(flags) if f)
        deferred = sum(1 for f in flags[:last] if not f)
        assert g.scored_steps == sum(flags)
        assert g.rm_tokens == g.n_prompt_tokens + 5 * sum(flags) + deferred
        assert g.llm_tokens == g.n_prompt_tokens + g.n_new_tokens - 1
    assert stats.rm_tokens_in >= sum(g.rm_tokens for g in gens)  # batch counters add padding


def test_bad_threshold_and_cross_tokenizer_are_refused(llama, prompts):
    with pytest.raises(DecodeInputError, match="gate_threshold"):
        _gen(llama, prompts, method="args-gated", gate_threshold=1.5)
    from argsfw.models import train_tokenizer

    other = train_tokenizer(["a different corpus of words"] * 50, vocab_size=300)
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm, other)
    if dec.shared_tokenizer:
        pytest.fail("the test tokenizer should differ from the policy's")
    with pytest.raises(DecodeInputError, match="shares the policy's tokenizer"):
        dec.generate(prompts, decode_settings(method="args-gated", **S))
