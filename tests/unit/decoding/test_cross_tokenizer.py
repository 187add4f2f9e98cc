"""An RM with its own tokenizer sees exactly rm_tokenizer(llm_tokenizer.decode(ids, skip_special_tokens=True))."""

from __future__ import annotations

import pytest
import torch

from argsfw.decoding import ArgsDecoder, decode_settings, reference_decode
from argsfw.decoding.accounting import DecodeStats
from argsfw.decoding.cross_tokenizer import CrossTokenizerScorer, retokenizer
from argsfw.decoding.reference_scorer import ReferenceScorer


@pytest.fixture(scope="module")
def other_rm(tiny_texts):
    """A reward model over a different (smaller, differently merged) tokenizer."""
    from argsfw.models import TinySpec, build_tiny_reward_model, train_tokenizer

    tok = train_tokenizer(tiny_texts[::3] + ["日本 émoji 🙂 ¿Qué?"] * 5, vocab_size=300)
    return tok, build_tiny_reward_model(tok, TinySpec(max_position_embeddings=256), seed=7)


def test_tokenizers_really_differ(llama, other_rm):
    text = "\n\nHuman: Can you help me bake bread?"
    assert llama.tokenizer(text).input_ids != other_rm[0](text).input_ids


@pytest.mark.parametrize("method,chunk", [("args-greedy", None), ("args-greedy-large", 2)])
def test_cross_tokenizer_equals_reference(llama, other_rm, prompts, method, chunk):
    rm_tok, rm = other_rm
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm, rm_tok)
    assert not dec.shared_tokenizer
    s = decode_settings(
        method=method, weight=2.0, topk=5, max_new_tokens=8, chunk_size=chunk, lenient=True
    )
    gens, stats = dec.generate(prompts + ["¿Qué tal? 日本 🙂"], s)
    convert = retokenizer(llama.tokenizer, rm_tok)
    for g in gens:
        ref, _ = reference_decode(
            llama.llm,
            rm,
            g.prompt_ids,
            weight=2.0,
            topk=5,
            max_new_tokens=8,
            eos_ids=tuple(dec.eos_ids),
            to_rm_ids=lambda ids: convert([ids])[0],
        )
        assert g.new_ids == ref


def test_cross_scores_match_fresh_reads_step_by_step(llama, other_rm):
    """Scores from the incremental cache (with re-tokenized tails masked out) equal full re-reads."""
    rm_tok, rm = other_rm
    convert = retokenizer(llama.tokenizer, rm_tok)
    ref = ReferenceScorer(rm, DecodeStats(), lambda ids: convert([ids])[0])
    scorer = CrossTokenizerScorer(rm, llama.tokenizer, rm_tok, DecodeStats())
    prompts = [llama.tokenizer(p).input_ids for p in ["Human: bake", "日本 🙂 and bread"]]
    scorer.start(None, None, prompts)
    seqs = [list(p) for p in prompts]
    gen = torch.Generator().manual_seed(0)
    vocab = len(llama.tokenizer)
    for _ in range(6):
        cands = torch.randint(0, vocab, (2, 4), generator=gen)
        got = scorer.score(cands)
        want = torch.tensor(
            [[ref.score_sequence(s + [v]) for v in row] for s, row in zip(seqs, cands.tolist())]
        )
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        chosen = cands[:, 0]
        scorer.commit(chosen)
        for s, v in zip(seqs, chosen.tolist()):
            s.append(v)
