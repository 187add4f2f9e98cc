"""Soft and speculative best-of-N against a slow reference that shares no code with them: every
sample drawn one token at a time by the policy's own full forward (no cache, the nucleus rule
written out again), every reward by the RM's own Hugging Face forward, the choice made again
here. Only the seeded draws are shared ("same tokens under the same seed" needs the same
random numbers)."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.decoding import ArgsDecoder, decode_settings
from argsfw.decoding.sampling import make_generator, sample_rows

N, STEPS = 4, 12


def _draw(llm, ids, top_p, temperature, gen) -> int:
    logits = llm(input_ids=torch.tensor([ids])).logits[0, -1].float() / temperature
    order = logits.argsort(descending=True)
    probs = logits[order].softmax(-1)
    mass_before = probs.cumsum(0) - probs
    kept = logits[order].masked_fill(mass_before >= top_p, float("-inf"))
    return int(order[sample_rows(kept.softmax(-1)[None], [gen])[0]])


def _reward(rm, ids) -> float:
    x = torch.tensor([ids])
    return float(rm(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, 0])


@torch.inference_mode()
def _reference(models, prompt_ids, key, s, eos, speculative=False):
    """``(chosen sample's new ids, every sample's new ids)`` for one prompt."""
    gens = [make_generator(s.seed, key, sample=j) for j in range(N)]
    new = [[] for _ in range(N)]
    live, rejected = set(range(N)), set()
    for t in range(1, s.max_new_tokens + 1):
        for j in sorted(live):
            tok = _draw(models.llm, prompt_ids + new[j], s.top_p, s.temperature, gens[j])
            new[j].append(tok)
            if tok in eos:
                live.discard(j)
        if speculative and t % s.rejection_every == 0 and t < s.max_new_tokens and live:
            scored = sorted((_reward(models.rm, prompt_ids + new[j]), j) for j in live)
            drop = {
                j
                for _, j in scored[
                    : min(len(scored) - 1, math.floor(s.rejection_rate * len(scored)))
                ]
            }
            live -= drop
            rejected |= drop
    final = [j for j in range(N) if j not in rejected]
    rewards = {j: _reward(models.rm, prompt_ids + new[j]) for j in final}
    if speculative or s.method == "best-of-n":
        return new[max(final, key=lambda j: (rewards[j], -j))], new
    r = torch.tensor([rewards[j] for j in range(N)], dtype=torch.float64)
    pick = sample_rows(
        (r / s.reward_temperature).softmax(-1)[None], [make_generator(s.seed, key, sample=-1)]
    )
    return new[int(pick[0])], new


def _settings(method, **kw):
    base = dict(method=method, num_samples=N, max_new_tokens=STEPS, temperature=1.0, top_p=0.95,
                rejection_every=3, rejection_rate=0.5, reward_temperature=0.05, batch_size=4)  # fmt: skip
    return decode_settings(lenient=True, **{**base, **kw})


@pytest.mark.parametrize(
    "method,kw",
    [
        ("soft-best-of-n", {}),
        ("soft-best-of-n", {"reward_temperature": 5.0}),
        ("speculative-best-of-n", {}),
        ("speculative-best-of-n", {"rejection_rate": 0.75, "rejection_every": 4}),
    ],
)
def test_against_the_slow_reference(llama, prompts, method, kw):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    s = _settings(method, **kw)
    free, _ = dec.generate(prompts, _settings("nucleus", num_samples=1))
    dec.eos_ids = sorted({t for g in free for t in g.new_ids[2:5]})  # common tokens: rows end early
    gens, _ = dec.generate(prompts, s)
    speculative = method.startswith("spec")
    ended = inside = 0
    for p, g in zip(prompts, gens):
        ids = list(llama.tokenizer(p).input_ids)
        want, samples = _reference(llama, ids, p, s, set(dec.eos_ids), speculative)
        assert g.new_ids == want, p
        ended += g.finished
        # each model reads the prompt once and every sample's tokens once (a rejected sample's
        # up to its rejection); the policy never feeds a sample's last token
        assert g.rm_tokens == len(ids) + sum(map(len, samples)), p
        assert g.llm_tokens == len(ids) + sum(len(x) - 1 for x in samples), p
        assert g.rm_reread == g.llm_reread == 0, p
        if speculative:
            inside += any(x[-1] in dec.eos_ids and len(x) % s.rejection_every for x in samples)
    assert ended >= 1  # the EOS path was taken
    assert inside >= 1 or not speculative  # a sample ended between two rejection points


def test_soft_at_small_lambda_is_best_of_n_and_speculative_without_rejection_too(llama, prompts):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    best, st_best = dec.generate(prompts, _settings("best-of-n"))
    soft, _ = dec.generate(prompts, _settings("soft-best-of-n", reward_temperature=1e-6))
    spec, st_spec = dec.generate(prompts, _settings("speculative-best-of-n", rejection_rate=0.0))
    assert [g.new_ids for g in soft] == [g.new_ids for g in best] == [g.new_ids for g in spec]
    assert st_spec.llm_tokens_in == st_best.llm_tokens_in
    cut, st_cut = dec.generate(prompts, _settings("speculative-best-of-n", rejection_rate=0.75))
    # rejected samples stop early: fewer policy tokens than best-of-N's
    assert sum(g.llm_tokens for g in cut) < sum(g.llm_tokens for g in best)


@pytest.mark.parametrize(
    "kw,match",
    [
        (
            dict(method="soft-best-of-n", reward_temperature=0.0),
            "reward_temperature must be a number > 0",
        ),
        (
            dict(method="speculative-best-of-n", rejection_rate=1.0),
            r"rejection_rate must be a number in \[0, 1\)",
        ),
        (
            dict(method="speculative-best-of-n", rejection_every=0),
            "rejection_every must be an integer >= 1",
        ),
        (dict(method="soft-best-of-n", num_samples=0), "num_samples must be an integer >= 1"),
    ],
)
def test_bad_settings_are_one_line(kw, match):
    from argsfw.decoding.config import check_decode_settings
    from argsfw.decoding.types import DecodeInputError

    with pytest.raises(DecodeInputError, match=match) as e:
        check_decode_settings(decode_settings(**kw), prefix="decode.")
    assert "\n" not in str(e.value) and str(e.value).startswith("decode.")


@torch.inference_mode()
def _reference_cd(models, prompt_ids, key, s, eos):
    """Blockwise controlled decoding the slow way: ``(new ids, block candidates' token counts)``."""
    k, new, block, sizes = s.num_samples, [], 0, []
    while len(new) < s.max_new_tokens:
        m = min(s.block_size, s.max_new_tokens - len(new))
        conts, ended = [], []
        for j in range(k):
            gen = make_generator(s.seed, key, sample=block * k + j)
            cont, done = [], False
            for _ in range(m):
                tok = _draw(models.llm, prompt_ids + new + cont, s.top_p, s.temperature, gen)
                cont.append(tok)
                if tok in eos:
                    done = True
                    break
            conts.append(cont)
            ended.append(done)
        scores = [_reward(models.rm, prompt_ids + new + c) for c in conts]
        sizes.append([len(c) for c in conts])
        best = max(range(k), key=lambda j: (scores[j], -j))
        new += conts[best]
        block += 1
        if ended[best]:
            break
    return new, sizes


@pytest.mark.parametrize("block_size", [1, 5, 12])
def test_cd_blockwise_against_the_slow_reference(llama, prompts, block_size):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    free, _ = dec.generate(prompts, _settings("nucleus", num_samples=1))
    dec.eos_ids = sorted({t for g in free for t in g.new_ids[2:5]})  # common tokens: rows end early
    s = _settings("cd-blockwise", num_samples=3, block_size=block_size)
    gens, _ = dec.generate(prompts, s)
    for p, g in zip(prompts, gens):
        ids = list(llama.tokenizer(p).input_ids)
        want, sizes = _reference_cd(llama, ids, p, s, set(dec.eos_ids))
        assert g.new_ids == want, (p, block_size)
        assert g.finished == (g.new_ids[-1] in dec.eos_ids)
        # both caches carried across blocks: the prompt once, each candidate's tokens once; the
        # policy feeds a candidate's last token only when it wins and the next block starts
        assert g.rm_tokens == len(ids) + sum(map(sum, sizes)), (p, block_size)
        blocks = len(sizes)
        llm = len(ids) + sum(n - 1 for b in sizes for n in b) + blocks - 1
        assert g.llm_tokens == llm and g.rm_reread == g.llm_reread == 0, (p, block_size)
    assert any(g.finished for g in gens)
    if block_size > 1:  # an answer ended inside a block
        assert any(g.finished and len(g.new_ids) % block_size for g in gens)


def test_cd_with_one_block_is_best_of_k(llama, prompts):
    """M >= the answer's length: one block of K samples, the best kept: best-of-N with N = K."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    cd, _ = dec.generate(prompts, _settings("cd-blockwise", num_samples=3, block_size=STEPS))
    best, _ = dec.generate(prompts, _settings("best-of-n", num_samples=3))
    assert [g.new_ids for g in cd] == [g.new_ids for g in best]
