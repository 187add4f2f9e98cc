"""Accounting numbers make sense: forwards per token, token counts, memory, RM cache size O(L)."""

from __future__ import annotations

import math

import pytest

from argsfw.decoding import ArgsDecoder, decode_settings


def _stats(m, prompts, **kw):
    s = decode_settings(max_new_tokens=6, stop_at_eos=False, batch_size=8, **kw)
    return ArgsDecoder(m.llm, m.tokenizer, m.rm).generate(prompts, s)


def test_one_forward_per_model_per_token(llama, prompts):
    gens, st = _stats(llama, prompts, method="args-greedy", weight=1.0, topk=5)
    assert st.new_tokens == sum(g.n_new_tokens for g in gens) == 6 * len(prompts)
    assert st.llm_forwards == 6  # prefill + 5 cached steps, whole batch at once
    assert st.rm_forwards == 6  # prompt read with step 1's candidates, then one forward per step
    n_prompt = max(g.n_prompt_tokens for g in gens)
    assert st.rm_tokens_in == len(prompts) * (
        n_prompt + 5 + 5 * 5
    )  # each token read once: chosen tokens are adopted
    assert st.seconds > 0 and st.tokens_per_second > 0 and st.peak_memory_bytes > 0
    assert st.as_dict()["rm_forwards_per_token"] == pytest.approx(6 / st.new_tokens)


def test_greedy_large_forwards_per_chunk(llama, prompts):
    _, st = _stats(llama, prompts, method="args-greedy-large", weight=1.0, topk=5, chunk_size=2)
    assert st.rm_forwards == 6 * math.ceil(5 / 2)


def test_weight_zero_and_baselines_skip_the_rm(llama, prompts):
    for kw in (
        dict(method="args-greedy", weight=0.0),
        dict(method="greedy"),
        dict(method="nucleus"),
    ):
        _, st = _stats(llama, prompts, **kw)
        assert st.rm_forwards == 0 and st.llm_forwards == 6


def test_best_of_n_counts_and_picks_the_best(llama, prompts):
    gens, st = _stats(llama, prompts, method="best-of-n", num_samples=3, temperature=1.0)
    assert st.llm_forwards == 6  # prompts read once, then the 3 copies decode together
    assert st.new_tokens == 3 * 6 * len(prompts)
    assert st.rm_forwards >= 1 and all(isinstance(g.reward, float) for g in gens)
    one, _ = _stats(llama, prompts, method="best-of-n", num_samples=1, temperature=1.0)
    nucleus, _ = _stats(llama, prompts, method="nucleus", temperature=1.0)
    assert [g.new_ids for g in one] == [
        g.new_ids for g in nucleus
    ]  # sample 0 is the nucleus sample
    assert all(b.reward >= o.reward - 1e-5 for b, o in zip(gens, one))


def test_rm_cache_is_linear_in_length_not_k(llama, prompts):
    cfg = llama.rm.config
    col = 2 * cfg.num_hidden_layers * cfg.hidden_size * 4  # keys + values of one fp32 position
    for k in (2, 16):
        gens, st = _stats(llama, prompts[:1], method="args-greedy", weight=1.0, topk=k)
        # peak: prompt + 5 committed tokens + k candidates, for ONE row
        assert st.rm_cache_bytes_peak == (gens[0].n_prompt_tokens + 6 - 1 + k) * col


def test_finished_rows_stop_costing(llama, prompts):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    s = decode_settings(
        method="args-greedy", weight=1.0, topk=3, max_new_tokens=8, stop_at_eos=False
    )
    free, _ = dec.generate(prompts, s)
    dec.eos_ids = [free[0].new_ids[0]]  # row 0 ends at once
    gens, st = dec.generate(prompts, s, stop_at_eos=True)
    assert gens[0].n_new_tokens == 1
    first = len(prompts) * (max(g.n_prompt_tokens for g in gens) + 3)  # padded prompts + k
    later = (len(prompts) - 1) * 3 * 7  # steps 2..8: k candidates, live rows only
    assert st.rm_tokens_in == first + later


def test_stats_merge():
    from argsfw.decoding import DecodeStats

    a = DecodeStats(prompts=1, new_tokens=4, llm_forwards=4, seconds=1.0, peak_memory_bytes=10)
    b = DecodeStats(prompts=2, new_tokens=8, rm_forwards=8, seconds=3.0, peak_memory_bytes=5)
    c = a.merge(b)
    assert (c.prompts, c.new_tokens, c.seconds, c.peak_memory_bytes) == (3, 12, 4.0, 10)
    assert c.tokens_per_second == 3.0


def test_per_prompt_token_counts_exclude_padding(llama, prompts):
    """Each prompt's own counts: the prompt once, one policy token per later step, k RM tokens per
    step (chosen tokens are adopted); best-of-N: each model reads the prompt once, then every
    sample's tokens; nothing is read twice."""
    t, k, n = 6, 5, 3
    gens, _ = _stats(llama, prompts, method="args-greedy", weight=1.0, topk=k)
    assert len({g.n_prompt_tokens for g in gens}) > 1  # mixed lengths: the batch is padded
    for g in gens:
        assert g.llm_tokens == g.n_prompt_tokens + t - 1
        assert g.rm_tokens == g.n_prompt_tokens + k * t and g.scored_steps == t
    gens, _ = _stats(llama, prompts, method="greedy")
    assert all(g.rm_tokens == 0 and g.scored_steps is None for g in gens)
    assert all(g.llm_tokens == g.n_prompt_tokens + t - 1 for g in gens)
    gens, _ = _stats(llama, prompts, method="best-of-n", num_samples=n, temperature=1.0)
    for g in gens:
        assert g.llm_tokens == g.n_prompt_tokens + n * (t - 1)
        assert g.rm_tokens == g.n_prompt_tokens + n * t
        assert g.llm_reread == g.rm_reread == 0


def test_the_ledger_counts_re_reads(llama, prompts):
    """Chunked ARGS re-reads each chosen token (it is not held between chunks); the full-sequence
    scorer re-reads every prefix every step; the cached paths re-read nothing."""
    t, k = 6, 4
    for kw in (dict(method="args-greedy"), dict(method="args-greedy-large", chunk_size=k)):
        gens, _ = _stats(llama, prompts, weight=1.0, topk=k, **kw)
        assert all(g.llm_reread == 0 == g.rm_reread for g in gens)  # one chunk: held, adopted
    gens, _ = _stats(llama, prompts, method="args-greedy-large", weight=1.0, topk=k, chunk_size=2)
    for g in gens:  # the chosen token of steps 1..t-1 is read again with the next step's pending
        assert g.rm_reread == t - 1 and g.rm_tokens == g.n_prompt_tokens + k * t + t - 1
    gens, _ = _stats(llama, prompts, method="args-greedy", weight=1.0, topk=k, scorer="full")
    for g in gens:  # step j reads prompt + j-1 chosen tokens + a candidate, k times
        p = g.n_prompt_tokens
        assert g.rm_tokens == sum(k * (p + j) for j in range(1, t + 1))
        # the k copies of step 1 run in one forward (none could reuse another's): no re-read;
        # from step 2 on, all but the candidate were computed by an earlier forward
        assert g.rm_reread == sum(k * (p + j - 1) for j in range(2, t + 1))


def test_flops_follow_the_formula(llama, prompts):
    """Greedy computes prompt + t - 1 positions, position i attending i keys: the FLOPs are
    2 N (P + t - 1) + 4 L d sum(1..P+t-1), with N the non-embedding parameters."""
    from argsfw.decoding.accounting import flop_spec

    spec = flop_spec(llama.llm)
    cfg = llama.llm.config
    tables = {id(w): w for w in (llama.llm.get_input_embeddings().weight, llama.llm.lm_head.weight)}
    emb = sum(w.numel() for w in tables.values())  # token embedding and LM head (once if tied)
    assert emb >= cfg.vocab_size * cfg.hidden_size
    assert spec.params == sum(p.numel() for p in llama.llm.parameters()) - emb
    assert (spec.layers, spec.attn_width) == (cfg.num_hidden_layers, cfg.hidden_size)
    gens, _ = _stats(llama, prompts, method="greedy")
    for g in gens:
        n = g.n_prompt_tokens + 6 - 1
        want = 2 * spec.params * n + 4 * spec.layers * spec.attn_width * n * (n + 1) // 2
        assert g.llm_flops == want and g.rm_flops == 0
