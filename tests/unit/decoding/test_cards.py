"""CARDS against a slow reference that shares no code with it: every token drawn by the policy's
own full forward (no cache, top-k written out again), the entropy rule read through
torch.distributions, every reward by the RM's own Hugging Face forward over the whole sequence,
the threshold and acceptance rule written out again. Only the seeded draws are shared."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.decoding import ArgsDecoder, DecodeConfig, decode_settings
from argsfw.decoding.sampling import make_generator, sample_rows

STEPS = 14


def _hf_reward(rm, ids) -> float:
    x = torch.tensor([ids])
    return float(rm(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, 0])


@torch.inference_mode()
def _reference(m, prompt, key, s, o, eos):
    """``(new ids, ended with EOS, tokens sampled, rewards read whole, re-read tokens, counts)``
    for one prompt; a re-read token is one drawn after a prefix that an earlier candidate had
    already read (the same tokens resampled after a rejection)."""
    tok_gen, acc_gen = make_generator(s.seed, key), make_generator(s.seed, key, sample=-1)
    beta = o["beta"] if o.get("beta") is not None else s.temperature
    r_star, alpha, big_m = o["reward_threshold"], o["alpha"], s.max_new_tokens
    r_prompt = _hf_reward(m.rm, prompt)
    tau_start = alpha * r_star + (1 - alpha) * r_prompt
    answer, sampled, read_whole, seen_prefixes, rereads = [], 0, len(prompt), set(), 0
    counts = {"accepted": 0, "rejected": 0, "fallback": 0, "unsure": 0, "full": 0}
    while len(answer) < big_m:
        seen, rejections = [], 0
        while True:
            seg = []
            while True:
                logits = (
                    m.llm(input_ids=torch.tensor([prompt + answer + seg])).logits[0, -1].float()
                )
                unsure = (
                    torch.distributions.Categorical(logits=logits).entropy()
                    >= o["entropy_threshold"]
                )
                if len(seg) >= o["min_segment"] and unsure:
                    counts["unsure"] += 1
                    break
                vals, ids = (logits / s.temperature).topk(o["topk"])
                seg.append(int(ids[int(sample_rows(vals.softmax(-1)[None], [tok_gen])[0])]))
                sampled += 1
                prefix = tuple(answer + seg)
                rereads += prefix in seen_prefixes
                seen_prefixes.add(prefix)
                if (
                    seg[-1] in eos
                    or len(seg) == o["max_segment"]
                    or len(answer) + len(seg) == big_m
                ):
                    counts["full"] += len(seg) == o["max_segment"]
                    break
            r = _hf_reward(m.rm, prompt + answer + seg)
            read_whole += len(prompt + answer + seg)
            seen.append((r, -len(seen), seg))
            if rejections == o["max_rejections"]:
                answer += max(seen)[2]  # the highest reward; among equals the earliest
                counts["fallback"] += 1
                break
            tau = tau_start + (r_star - tau_start) * (len(answer) + len(seg)) / big_m
            tau = r_star if tau > r_star else tau
            u = float(torch.rand((), generator=acc_gen))
            if (r - tau) / beta >= 0 or u < math.exp((r - tau) / beta):
                answer += seg
                counts["accepted"] += 1
                break
            rejections += 1
            counts["rejected"] += 1
        if answer[-1] in eos:
            return answer, True, sampled, read_whole, rereads, counts
    return answer, False, sampled, read_whole, rereads, counts


def _setup(m, prompts):
    """A decoder whose EOS ids are common tokens (answers end inside segments), and an entropy
    threshold between the policy's confident and unsure steps."""
    dec = ArgsDecoder(m.llm, m.tokenizer, m.rm)
    free, _ = dec.generate(prompts, DecodeConfig(method="nucleus", max_new_tokens=6))
    dec.eos_ids = sorted({t for g in free for t in g.new_ids[1:6]})
    with torch.inference_mode():
        ents = [
            float(torch.distributions.Categorical(logits=m.llm(input_ids=torch.tensor([g.prompt_ids + g.new_ids[:j]])).logits[0, -1]).entropy())
            for g in free for j in range(len(g.new_ids))
        ]  # fmt: skip
        rewards = [_hf_reward(m.rm, g.prompt_ids + g.new_ids) for g in free]
    return dec, float(torch.tensor(ents).median()), float(torch.tensor(rewards).median())


DEFAULTS = dict(entropy_threshold=3.0, min_segment=4, max_segment=64, reward_threshold=0.2, alpha=0.5, beta=None, max_rejections=20, topk=40)  # fmt: skip
CASES = {  # name: (options beyond the defaults, r* relative to the median reward)
    "mixed": (dict(min_segment=2, max_segment=5, max_rejections=3, beta=0.05), 0.0),
    "budget-runs-out": (
        dict(min_segment=1, max_segment=4, max_rejections=2, beta=1e-3, topk=3),
        100.0,
    ),
    "always-accepted": (dict(min_segment=3, max_segment=6, max_rejections=20), -100.0),
}


def _check(models, prompts, case, scorer):
    dec, h_mid, r_mid = _setup(models, prompts)
    extra, shift = CASES[case]
    o = dict(DEFAULTS, entropy_threshold=h_mid, reward_threshold=r_mid + shift, **extra)
    s = decode_settings(
        "cards", max_new_tokens=STEPS, temperature=1.0, batch_size=4, scorer=scorer, **o
    )
    gens, stats = dec.generate(prompts, s)
    one, _ = dec.generate(prompts, s, batch_size=1)
    totals = {"accepted": 0, "rejected": 0, "fallback": 0, "unsure": 0, "full": 0, "rereads": 0}
    for p, g, g1 in zip(prompts, gens, one):
        ids = list(models.tokenizer(p).input_ids)
        want, ended, sampled, read_whole, rereads, counts = _reference(
            models, ids, p, s, o, set(dec.eos_ids)
        )
        assert g.new_ids == want == g1.new_ids, (case, p)
        assert g.finished == ended
        # the prompt once, every sampled token once; the ledger's re-reads are the tokens
        # resampled after the same prefix as an earlier (rejected) candidate's, and nothing else
        assert g.llm_tokens == len(ids) + sampled and g.llm_reread == rereads
        assert (g.llm_tokens, g.llm_reread) == (g1.llm_tokens, g1.llm_reread)
        if scorer == "full":
            assert g.rm_tokens == read_whole and stats.scorer == "full"
        else:  # the RM read the prompt once and each sampled token once, in step with the policy
            assert g.rm_tokens == len(ids) + sampled and stats.scorer == "tree"
            assert g.rm_reread == rereads
        assert g.scored_steps == counts["accepted"] + counts["rejected"] + counts["fallback"]
        totals = {k: totals[k] + counts.get(k, rereads) for k in totals}
    assert any(g.finished for g in gens)  # EOS ended answers inside segments
    if case == "mixed":  # both tests decided, segments cut by both rules
        assert totals["accepted"] and totals["rejected"] and totals["unsure"] and totals["full"]
    if case == "budget-runs-out":  # and resampling repeats rejected candidates' tokens
        assert totals["fallback"] and not totals["accepted"] and totals["rereads"]


@pytest.mark.parametrize("case", list(CASES))
def test_against_the_slow_reference(models, prompts, case):
    """The cached lock-step path (the tiny RMs share the policy's tokenizer), both architectures."""
    _check(models, prompts, case, "auto")


def test_full_rereads_against_the_slow_reference(llama, prompts):
    """decode.scorer=full: every candidate re-read whole (the path of encoders and other tokenizers)."""
    _check(llama, prompts, "mixed", "full")


def test_compacting_the_caches_every_step_changes_nothing(llama, prompts, monkeypatch):
    from argsfw.decoding.methods import cards

    dec, h_mid, r_mid = _setup(llama, prompts)
    o = dict(entropy_threshold=h_mid, reward_threshold=r_mid, min_segment=2, max_segment=5, max_rejections=3, beta=0.05)  # fmt: skip
    s = decode_settings("cards", max_new_tokens=STEPS, temperature=1.0, batch_size=4, **o)
    plain, _ = dec.generate(prompts, s)
    calls = []
    real = cards._Lanes.compact
    monkeypatch.setattr(cards, "COMPACT_SLACK", -(10**6))
    monkeypatch.setattr(cards._Lanes, "compact", lambda *a: calls.append(1) or real(*a))
    compacted, _ = dec.generate(prompts, s)
    assert len(calls) > 5
    assert [g.new_ids for g in compacted] == [g.new_ids for g in plain]
    assert [g.reward for g in compacted] == pytest.approx([g.reward for g in plain], abs=1e-4)
    assert [(g.llm_reread, g.rm_reread) for g in compacted] == [
        (g.llm_reread, g.rm_reread) for g in plain
    ]


def test_no_rejections_is_top_k_sampling(llama, prompts):
    """max_rejections=0 keeps every first candidate: the tokens of top-k sampling (k=40) exactly."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    s = decode_settings("cards", max_new_tokens=STEPS, temperature=0.8, max_rejections=0)
    cards_out, _ = dec.generate(prompts, s)
    top_k, _ = dec.generate(
        prompts, decode_settings("top-k", topk=40, max_new_tokens=STEPS, temperature=0.8)
    )
    assert [g.new_ids for g in cards_out] == [g.new_ids for g in top_k]


@pytest.mark.parametrize(
    "options,match",
    [
        ({"entropy_threshold": 0}, r"decode.entropy_threshold must be a number > 0, got 0"),
        ({"min_segment": 5, "max_segment": 4}, r"decode.max_segment=4 must be >= decode.min_segment \(5\)"),
        ({"alpha": 1.5}, r"decode.alpha must be a number in \[0, 1\], got 1.5"),
        ({"max_rejections": -1}, "decode.max_rejections must be an integer >= 0, got -1"),
        ({"beta": 0.0}, "decode.beta must be a number > 0, or null, got 0.0"),
        ({"topk": 0}, r"decode.topk must be an integer in \[1, vocabulary\], got 0"),
    ],
)  # fmt: skip
def test_bad_knobs_are_one_line(options, match):
    from argsfw.decoding.config import check_decode_settings
    from argsfw.decoding.types import DecodeInputError

    with pytest.raises(DecodeInputError, match=match) as e:
        check_decode_settings(decode_settings("cards", **options), prefix="decode.")
    assert "\n" not in str(e.value)


def test_an_unknown_knob_names_the_methods_knobs():
    from argsfw.decoding.config import from_config
    from argsfw.decoding.types import DecodeInputError

    with pytest.raises(
        DecodeInputError,
        match="decode.gamma is not a setting of cards; its knobs: .*decode.entropy_threshold",
    ):
        from_config({"method": "cards", "gamma": 1})  # fmt: skip
