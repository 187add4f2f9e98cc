"""GenARM and token-rm: the cached, batched engine equals the no-cache reference token for token."""

from __future__ import annotations

import pytest
import torch

from argsfw.decoding import ArgsDecoder, DecodeConfig, decode_settings
from argsfw.decoding.config import sampling_temperature
from argsfw.decoding.reference import reference_token_decode
from argsfw.decoding.sampling import make_generator

CASES = [  # method, settings, the RM fixture attribute
    ("genarm-greedy", dict(alpha=1.5), "arm"),
    ("genarm", dict(alpha=1.0, temperature=0.5), "arm"),
    ("token-rm", dict(weight=1.5, topk=5), "token_rm"),
    ("token-rm-stochastic", dict(weight=1.5, topk=5, temperature=1.0), "token_rm"),
]


def _reference(m, rm, dec, g, s: DecodeConfig):
    return reference_token_decode(
        m.llm,
        rm,
        g.prompt_ids,
        genarm=s.method.startswith("genarm"),  # the reference shares no code with the registry
        greedy=not hasattr(s, "temperature"),
        alpha=getattr(s, "alpha", 1.0),
        weight=getattr(s, "weight", 1.0),
        topk=getattr(s, "topk", 10),
        max_new_tokens=s.max_new_tokens,
        temperature=sampling_temperature(s),
        generator=make_generator(s.seed, g.prompt),
        eos_ids=tuple(dec.eos_ids),
    )


@pytest.mark.parametrize("method,kw,rm_name", CASES)
def test_fast_equals_reference(models, prompts, method, kw, rm_name):
    """Batch 1 and one left-padded batch of different prompt lengths both equal the reference."""
    rm = getattr(models, rm_name)
    dec = ArgsDecoder(models.llm, models.tokenizer, rm)
    s = decode_settings(method=method, max_new_tokens=8, **kw)
    batched, _ = dec.generate(prompts, s, batch_size=4)
    single, _ = dec.generate(prompts, s, batch_size=1)
    assert len({len(g.prompt_ids) for g in batched}) > 1  # the batch really is left padded
    for g, one in zip(batched, single):
        ref, finished = _reference(models, rm, dec, g, s)
        assert g.new_ids == ref == one.new_ids, (method, g.index)
        assert g.finished == finished


@pytest.mark.parametrize("method,kw,rm_name", CASES)
def test_guidance_changes_the_output(llama, prompts, method, kw, rm_name):
    """The RM really steers: the guided tokens differ from unguided ones for some prompt."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, getattr(llama, rm_name))
    s = decode_settings(method=method, max_new_tokens=8, **kw)
    off = dict(alpha=0.0) if method.startswith("genarm") else dict(weight=0.0)
    guided, _ = dec.generate(prompts, s)
    plain, _ = dec.generate(prompts, s, **off)
    assert [g.new_ids for g in guided] != [g.new_ids for g in plain]


@pytest.mark.parametrize(
    "method,off,rm_name", [("genarm-greedy", "alpha", "arm"), ("token-rm", "weight", "token_rm")]
)
def test_zero_guidance_equals_plain_greedy_and_model_generate(
    models, prompts, method, off, rm_name
):
    dec = ArgsDecoder(models.llm, models.tokenizer, getattr(models, rm_name))
    gens, stats = dec.generate(
        prompts,
        decode_settings(method=method, topk=4, max_new_tokens=10, lenient=True, **{off: 0.0}),
    )
    assert stats.rm_forwards == 0 and stats.rm_tokens_in == 0
    plain, _ = dec.generate(prompts, decode_settings(method="greedy", max_new_tokens=10))
    assert [g.new_ids for g in gens] == [g.new_ids for g in plain]
    for g in gens:
        ids = torch.tensor([g.prompt_ids])
        out = models.llm.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=10,
            pad_token_id=models.tokenizer.pad_token_id,
        )
        assert g.new_ids == out[0, ids.shape[1] :].tolist()


def test_genarm_sampling_does_not_depend_on_batching(llama, prompts):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.arm)
    s = decode_settings(method="genarm", alpha=1.0, temperature=0.5, max_new_tokens=8)
    together, _ = dec.generate(prompts, s, batch_size=4)
    alone, _ = dec.generate(prompts[::-1], s, batch_size=1)
    assert [g.new_ids for g in together] == [g.new_ids for g in alone[::-1]]
    other, _ = dec.generate(prompts, s, seed=1)
    assert [g.new_ids for g in other] != [g.new_ids for g in together]


@pytest.mark.parametrize("method,rm_name", [("genarm-greedy", "arm"), ("token-rm", "token_rm")])
def test_eos_stops_each_row_and_is_kept(llama, prompts, method, rm_name):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, getattr(llama, rm_name))
    s = decode_settings(method=method, topk=4, max_new_tokens=10, stop_at_eos=False, lenient=True)
    free, _ = dec.generate(prompts, s)
    stop = free[0].new_ids[2]  # row 0's third token plays EOS
    dec.eos_ids = [stop]
    gens, stats = dec.generate(prompts, s, stop_at_eos=True)
    for f, g in zip(free, gens):
        cut = f.new_ids.index(stop) + 1 if stop in f.new_ids else len(f.new_ids)
        assert g.new_ids == f.new_ids[:cut] and g.finished == (stop in f.new_ids)
        ref, finished = _reference(llama, getattr(llama, rm_name), dec, g, s)
        assert (ref, finished) == (g.new_ids, g.finished)
    assert gens[0].finished and gens[0].new_ids[-1] == stop
    assert stats.new_tokens == sum(g.n_new_tokens for g in gens)


def test_genarm_reward_is_the_arm_log_likelihood(llama, prompts):
    """GenARM's reported reward is r(x, y) = sum_t log pi_r(y_t | x, y_<t), recomputed in one forward."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.arm)
    gens, _ = dec.generate(prompts, decode_settings(method="genarm-greedy", max_new_tokens=6))
    for g in gens:
        with torch.no_grad():
            logp = llama.arm(input_ids=torch.tensor([g.ids])).logits[0].float().log_softmax(-1)
        n = g.n_prompt_tokens
        want = sum(float(logp[n - 1 + t, tok]) for t, tok in enumerate(g.new_ids))
        assert g.reward == pytest.approx(want, abs=1e-4)


def test_token_rm_reward_is_the_head_value_of_the_last_token(llama, prompts):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.token_rm)
    gens, _ = dec.generate(prompts, decode_settings(method="token-rm", topk=5, max_new_tokens=6))
    for g in gens:
        with torch.no_grad():
            head = llama.token_rm(input_ids=torch.tensor([g.ids[:-1]])).logits[0, -1].float()
        assert g.reward == pytest.approx(float(head[g.new_ids[-1]]), abs=1e-4)


@pytest.mark.parametrize("method,rm_name", [("genarm-greedy", "arm"), ("token-rm", "token_rm")])
def test_accounting_one_rm_token_per_generated_token(llama, prompts, method, rm_name):
    """The RM costs what the policy costs: the padded prompts once, then one token per new token.

    Counted: ``rm_tokens_in`` = B * T_pad (prefill) + one per generated token except each row's
    last (no RM step is run after a row's final token); ``rm_forwards`` = 1 + steps - 1.
    """
    dec = ArgsDecoder(llama.llm, llama.tokenizer, getattr(llama, rm_name))
    s = decode_settings(method=method, topk=10, max_new_tokens=6, stop_at_eos=False, lenient=True)
    gens, st = dec.generate(prompts, s)
    width = max(g.n_prompt_tokens for g in gens)
    assert st.new_tokens == 6 * len(prompts)
    assert st.rm_forwards == st.llm_forwards == 6
    assert (
        st.rm_tokens_in == st.llm_tokens_in == len(prompts) * width + st.new_tokens - len(prompts)
    )
    assert st.rm_cache_bytes_peak > 0
    # per record (padding excluded), the RM reads exactly what the policy reads
    for g in gens:
        assert g.rm_tokens == g.llm_tokens == g.n_prompt_tokens + 6 - 1
    # finished rows stop costing the RM too
    dec.eos_ids = [gens[0].new_ids[0]]
    early, st2 = dec.generate(prompts, s, stop_at_eos=True)
    assert early[0].n_new_tokens == 1
    assert st2.rm_tokens_in == len(prompts) * width + st2.new_tokens - len(prompts)


def test_candidate_head_is_used_and_equals_the_full_head(models, prompts, monkeypatch):
    """token-rm applies the RM's head to the k candidates only; forcing the full head gives the same tokens."""
    from argsfw.decoding import token_level

    assert token_level.split_head(models.token_rm) is not None  # Llama and OPT both split
    s = decode_settings(method="token-rm", weight=1.5, topk=5, max_new_tokens=8)
    dec = ArgsDecoder(models.llm, models.tokenizer, models.token_rm)
    fast, _ = dec.generate(prompts, s)
    monkeypatch.setitem(token_level._SPLITS, models.token_rm, None)
    full, _ = dec.generate(prompts, s)
    assert [g.new_ids for g in fast] == [g.new_ids for g in full]
    assert [g.reward for g in fast] == pytest.approx([g.reward for g in full], abs=1e-5)


def test_a_forward_that_changes_the_head_keeps_the_full_path(llama, prompts):
    """An RM whose forward rescales its logits after the head fails the one-time probe."""
    import copy

    from argsfw.decoding import token_level

    rm = copy.deepcopy(llama.token_rm)
    plain_forward = rm.forward

    def scaled(*args, **kwargs):
        out = plain_forward(*args, **kwargs)
        out.logits = out.logits * 3.0 - 1.0
        return out

    rm.forward = scaled
    assert token_level.split_head(rm) is None
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm)
    s = decode_settings(method="token-rm", weight=1.0, topk=5, max_new_tokens=6)
    for g in dec.generate(prompts, s)[0]:
        assert (g.new_ids, g.finished) == _reference(llama, rm, dec, g, s)
