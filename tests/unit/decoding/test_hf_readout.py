"""Rewards are read as the RM's own Hugging Face forward reads them, in the cases that make it hard.

Real models often set pad == eos (SmolLM2: ``<|im_end|>``), and
``AutoModelForSequenceClassification`` reads a sequence at its rightmost non-pad token, so an
EOS candidate is worth the reward of the sequence without it. The policies here put EOS (or
the pad id) right behind the top token at every step, so it is a close candidate each time,
and scale their logits so some steps are confident and some unsure. The reference
(`reference_decode`) scores with ``rm(input_ids, attention_mask).logits`` and nothing else.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from argsfw.decoding import ArgsDecoder, decode_settings, reference_decode
from argsfw.decoding.probe import ScorerSpec, probe_scorer


class CloseCandidate(LlamaForCausalLM):
    """A tiny Llama whose token ``close_id`` always sits just behind the top logit."""

    close_id: int = 0
    scale: float = 1.0

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        logits = out.logits * self.scale
        top2 = logits.topk(2, dim=-1).values  # [B, T, 2]
        # just behind the runner-up: a close candidate that the reward decides on
        logits[..., self.close_id] = top2[..., 1] - 0.5
        out.logits = logits
        return out


def _models(tok, pad_id: int, close_id: int, seed: int = 0):
    vocab = len(tok)
    common = dict(
        vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=pad_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    llm = CloseCandidate(LlamaConfig(**common, tie_word_embeddings=False)).eval()
    llm.close_id, llm.scale = close_id, 40.0  # a spread of confident and unsure steps
    torch.manual_seed(seed + 1)
    rm = LlamaForSequenceClassification(LlamaConfig(**common, num_labels=1)).eval()
    with torch.no_grad():  # rewards of the same order as the logit gaps, so they decide steps
        rm.score.weight.mul_(40.0)
    return llm, rm


@pytest.fixture(scope="module")
def eos_pad(llama):
    """pad == eos (SmolLM2's shape), EOS the close candidate."""
    tok = llama.tokenizer
    return (tok, *_models(tok, pad_id=tok.eos_token_id, close_id=tok.eos_token_id))


@pytest.fixture(scope="module")
def pad_only(llama):
    """pad != eos, the pad id itself the close candidate (decoding goes on after it)."""
    tok = llama.tokenizer
    pad = 3 if tok.eos_token_id != 3 else 4
    return (tok, *_models(tok, pad_id=pad, close_id=pad, seed=5))


def _check(case, prompts, settings, **ref_kw):
    tok, llm, rm = case
    dec = ArgsDecoder(llm, tok, rm)
    gens, _ = dec.generate(prompts, settings, batch_size=len(prompts))
    singles, _ = dec.generate(prompts, settings, batch_size=1)
    for g, one in zip(gens, singles):
        ref, finished = reference_decode(
            llm, rm, g.prompt_ids, weight=settings.weight, topk=settings.topk,
            max_new_tokens=settings.max_new_tokens, eos_ids=tuple(dec.eos_ids), **ref_kw,
        )  # fmt: skip
        assert g.new_ids == ref == one.new_ids, (settings.scorer, g.index)
        assert g.finished == finished
    return gens


@pytest.mark.parametrize("scorer", ["tree", "expanded", "full"])
def test_eos_equal_pad_matches_the_hf_forward(eos_pad, prompts, scorer):
    s = decode_settings(method="args-greedy", weight=1.0, topk=4, max_new_tokens=10, scorer=scorer)
    gens = _check(eos_pad, prompts, s)
    # the hard case happened: EOS won some decodes and lost others
    assert any(g.finished for g in gens) and not all(g.finished for g in gens)
    if scorer == "tree":  # the prefix's reward came with the forward that read it: no re-read
        assert all(g.rm_reread == 0 for g in gens)


@pytest.mark.parametrize("scorer", ["tree", "expanded", "full"])
def test_pad_candidate_matches_the_hf_forward(pad_only, prompts, scorer):
    tok, llm, rm = pad_only
    s = decode_settings(method="args-greedy", weight=1.0, topk=4, max_new_tokens=10, scorer=scorer)
    gens = _check(pad_only, prompts, s)
    pad = rm.config.pad_token_id
    chosen = sum(g.new_ids.count(pad) for g in gens)
    assert chosen > 0  # a pad token was committed and decoding went on past it
    assert any(pad in g.new_ids[:-1] for g in gens)


def test_gated_matches_the_hf_forward(eos_pad, prompts):
    s = decode_settings(
        method="args-gated", weight=1.0, topk=4, max_new_tokens=10, gate_threshold=0.6
    )
    gens = _check(eos_pad, prompts, s, gate_threshold=0.6)
    steps = sum(len(g.new_ids) for g in gens)
    scored = sum(g.scored_steps for g in gens)
    assert 0 < scored < steps  # confident steps skipped the RM, unsure ones were scored
    assert all(g.rm_reread == 0 for g in gens)  # deferred tokens come with their rewards


def test_best_of_n_reward_is_the_hf_forward(eos_pad, prompts):
    tok, llm, rm = eos_pad
    dec = ArgsDecoder(llm, tok, rm)
    gens, _ = dec.generate(
        prompts, decode_settings(method="best-of-n", num_samples=3, max_new_tokens=8, top_p=1.0)
    )
    ended = 0
    for g in gens:
        ids = torch.tensor([g.prompt_ids + g.new_ids])
        with torch.no_grad():
            want = float(rm(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0])
        assert g.reward == pytest.approx(want, abs=1e-4)
        assert g.rm_reread == 0
        ended += g.new_ids[-1] == tok.eos_token_id
    assert ended > 0  # some samples end in EOS == pad: read one token earlier


def test_probe_exercises_the_pad_candidate(eos_pad):
    """The probe's candidates include the pad id, so a scorer that read it at its own position
    would miss; the wrapped fast scorer is verified and picked."""
    tok, _, rm = eos_pad
    result = probe_scorer(ScorerSpec(rm, tok, None, 128))
    assert result.scorer == "tree", result.summary()
    from argsfw.decoding import probe as probe_mod
    from argsfw.decoding.accounting import DecodeStats
    from argsfw.decoding.scoring import SharedTokenizerScorer

    prompts, steps = probe_mod._probe_inputs(ScorerSpec(rm, tok, None, 128))
    assert any(rm.config.pad_token_id in row for step in steps for row in step)
    unwrapped = probe_mod._run(SharedTokenizerScorer(rm, DecodeStats()), prompts, steps, "cpu")
    truth = probe_mod._truth(ScorerSpec(rm, tok, None, 128), prompts, steps)
    err = max(float((g - w).abs().max()) for g, w in zip(unwrapped, truth))
    assert err > 1e-3  # reading the pad candidate at its own position is wrong, and seen
