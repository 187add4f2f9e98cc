"""Every scorer (tree, expanded, full) gives the reference's tokens; the probe and its report."""

from __future__ import annotations

import pytest
import torch

from argsfw.decoding import ArgsDecoder, DecodeConfig, decode_settings, reference_decode
from argsfw.decoding.accounting import DecodeStats
from argsfw.decoding.config import sampling_temperature
from argsfw.decoding.cross_tokenizer import cut_retokenizer, retokenizer
from argsfw.decoding.reference_scorer import ReferenceScorer
from argsfw.decoding.sampling import make_generator
from argsfw.decoding.sequence_scorers import ExpandedScorer

SCORERS = ("tree", "expanded", "full")


def _reference(llm, rm, dec, g, s: DecodeConfig, to_rm_ids=None):
    return reference_decode(
        llm,
        rm,
        g.prompt_ids,
        weight=s.weight,
        topk=s.topk,
        max_new_tokens=s.max_new_tokens,
        greedy=s.method != "args-stochastic",
        temperature=sampling_temperature(s),
        generator=make_generator(s.seed, g.prompt),
        eos_ids=tuple(dec.eos_ids),
        to_rm_ids=to_rm_ids,
    )


@pytest.mark.parametrize(
    "method,chunk", [("args-greedy", None), ("args-greedy-large", 3), ("args-stochastic", None)]
)
def test_every_scorer_equals_reference(models, prompts, method, chunk):
    """Batched prompts of different lengths (left padding), each scorer forced in turn."""
    dec = ArgsDecoder(models.llm, models.tokenizer, models.rm)
    assert dec.probe.scorer == "tree"
    base = decode_settings(
        method, weight=1.5, topk=5, max_new_tokens=6, chunk_size=chunk, lenient=True
    )
    refs = None
    for name in SCORERS:
        gens, stats = dec.generate(prompts, base, scorer=name, batch_size=4)
        assert stats.scorer == name
        if refs is None:
            refs = [_reference(models.llm, models.rm, dec, g, base)[0] for g in gens]
        assert [g.new_ids for g in gens] == refs, name


def test_eos_mid_batch_with_a_held_expanded_cache(llama, prompts):
    """Rows that stop while the expanded cache is held (keep, then commit) keep the others right."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    s = decode_settings(weight=1.0, topk=4, max_new_tokens=8, stop_at_eos=False)
    free, _ = dec.generate(prompts, s)
    dec.eos_ids = [free[0].new_ids[2]]
    want, _ = dec.generate(prompts, s, stop_at_eos=True, scorer="tree")
    got, _ = dec.generate(prompts, s, stop_at_eos=True, scorer="expanded")
    assert [g.new_ids for g in got] == [g.new_ids for g in want]
    assert any(g.finished for g in got) and not all(g.finished for g in got)


@pytest.fixture(scope="module")
def other_rm(tiny_texts):
    from argsfw.models import TinySpec, build_tiny_reward_model, train_tokenizer

    tok = train_tokenizer(tiny_texts[::3] + ["日本 émoji 🙂 ¿Qué?"] * 5, vocab_size=300)
    return tok, build_tiny_reward_model(tok, TinySpec(max_position_embeddings=256), seed=7)


@pytest.mark.parametrize("name", ["expanded", "full"])
def test_cross_tokenizer_fallbacks_equal_reference(llama, other_rm, prompts, name):
    rm_tok, rm = other_rm
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm, rm_tok)
    s = decode_settings(weight=2.0, topk=5, max_new_tokens=6, scorer=name)
    gens, stats = dec.generate(prompts + ["¿Qué tal? 日本 🙂"], s)
    assert stats.scorer == name
    convert = retokenizer(llama.tokenizer, rm_tok)
    for g in gens:
        ref, _ = _reference(llama.llm, rm, dec, g, s, lambda ids: convert([ids])[0])
        assert g.new_ids == ref


def test_expanded_cross_scores_match_fresh_reads_step_by_step(llama, other_rm):
    """Random candidates re-tokenize the tail (holes in the cache); chunked steps, held steps and
    a dropped row all give the rewards of fresh full reads."""
    rm_tok, rm = other_rm
    convert = retokenizer(llama.tokenizer, rm_tok)
    ref = ReferenceScorer(rm, DecodeStats(), lambda ids: convert([ids])[0])
    scorer = ExpandedScorer(rm, DecodeStats(), convert)
    seqs = [llama.tokenizer(p).input_ids for p in ["Human: bake", "日本 🙂 and bread", "¿Qué?"]]
    scorer.start(None, None, seqs)
    seqs = [list(p) for p in seqs]
    gen = torch.Generator().manual_seed(0)
    for step in range(6):
        cands = torch.stack([torch.randperm(len(llama.tokenizer), generator=gen)[:4] for _ in seqs])
        got = scorer.score(cands, chunk_size=3 if step % 2 else None)
        want = torch.tensor(
            [ref.score_sequences([s + [v] for v in row]) for s, row in zip(seqs, cands.tolist())]
        )
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        if step == 2:  # drop the middle row while the expanded cache is held
            keep = torch.tensor([0, 2])
            scorer.keep(keep)
            cands, seqs = cands[keep], [seqs[0], seqs[2]]
        chosen = cands[:, step % 4]
        scorer.commit(chosen)
        for s, v in zip(seqs, chosen.tolist()):
            s.append(v)


def test_encoder_rm_cuts_long_texts_from_the_left(llama, tiny_texts):
    """Candidates past a 12-token encoder context are cut from the left ([CLS] and [SEP] kept) and counted."""
    from argsfw.models.families import build_family_model, train_wordpiece

    wordpiece = train_wordpiece(tiny_texts, 260)
    rm = build_family_model("bert", wordpiece, reward=True, seed=3)
    rm.config.max_position_embeddings = 12  # positions beyond are never read: texts are cut first
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm, wordpiece)
    s = decode_settings(weight=20.0, topk=4, max_new_tokens=12, stop_at_eos=False)
    gens, stats = dec.generate(["\n\nHuman: Can you help me bake bread?"], s)
    assert stats.rm_truncated > 0
    counted = DecodeStats()
    convert = cut_retokenizer(llama.tokenizer, wordpiece, 12, counted)
    cut = convert([gens[0].ids])[0]
    assert len(cut) == 12 and cut[0] == wordpiece.cls_token_id and cut[-1] == wordpiece.sep_token_id
    ref, _ = _reference(llama.llm, rm, dec, gens[0], s, lambda ids: convert([ids])[0])
    assert gens[0].new_ids == ref


def test_probe_reports_what_it_tried(llama):
    from argsfw.decoding.probe import ScorerSpec, probe_scorer

    spec = ScorerSpec(llama.rm, llama.tokenizer, None, 128)
    result = probe_scorer(spec, ("expanded", "full"))
    assert result.scorer == "expanded" and "expanded: max error" in result.summary()
    bf16 = probe_scorer(ScorerSpec(llama.rm.to(torch.bfloat16), llama.tokenizer, None, 128))
    llama.rm.float()
    assert bf16.scorer == "tree", bf16.summary()  # within bf16's tolerance, not fp32's
