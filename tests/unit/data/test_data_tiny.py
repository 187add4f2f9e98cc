"""The embedded tiny corpus: determinism, disjoint splits, learnable rule, oracle behaviour."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from argsfw.data import (
    DataConfig,
    DataError,
    load_pairs,
    load_prompts,
    tiny_corpus_texts,
    tiny_oracle,
    tiny_pairs,
    tiny_world,
)
from argsfw.data.tiny import TINY_SIZES, _corpus, contested


def test_sizes_format_and_speed():
    _corpus.cache_clear()
    start = time.perf_counter()
    splits = {s: tiny_pairs(s) for s in TINY_SIZES}
    assert time.perf_counter() - start < 1.0
    assert {s: len(v) for s, v in splits.items()} == {"train": 4000, "validation": 400, "test": 400}
    for p in splits["test"]:
        assert p.prompt.startswith("\n\nHuman: ") and p.prompt.endswith("\n\nAssistant:")
        assert p.chosen.startswith(" ") and p.rejected.startswith(" ") and p.chosen != p.rejected


def test_deterministic_in_seed_and_splits_disjoint():
    assert tiny_pairs("train", seed=0) == tiny_pairs("train", seed=0)
    assert tiny_pairs("train", seed=0) != tiny_pairs("train", seed=1)
    prompts = {s: {p.prompt for p in tiny_pairs(s)} for s in TINY_SIZES}
    ids = {s: {p.id for p in tiny_pairs(s)} for s in TINY_SIZES}
    assert len(prompts["train"]) == 4000  # unique prompts within a split too
    for a, b in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        assert not prompts[a] & prompts[b] and not ids[a] & ids[b]


def test_oracle_prefers_chosen_on_every_pair():
    pairs = [p for s in TINY_SIZES for p in tiny_pairs(s)]
    wins = sum(
        tiny_oracle(p.prompt, p.chosen).score > tiny_oracle(p.prompt, p.rejected).score
        for p in pairs
    )
    assert wins / len(pairs) >= 0.99
    assert all(tiny_oracle(p.prompt, p.chosen).correct for p in pairs)


def test_oracle_on_hand_written_responses():
    fact = tiny_world()["colour"][0]
    prompt = f"\n\nHuman: What colour is a {fact.subject}?\n\nAssistant:"
    assert tiny_oracle(prompt, f" Sure! A {fact.subject} is {fact.value}.").score == 1.5
    assert tiny_oracle(prompt, f" Sure! A {fact.subject} is {fact.decoy}.").correct is False
    assert tiny_oracle(prompt, f" Ugh, fine. It is {fact.value}.").score == 0.5
    assert tiny_oracle(prompt, " Sure!").correct is None
    # text after a new Human: turn does not count
    assert tiny_oracle(prompt, f" Sure! Hmm.\n\nHuman: is it {fact.value}?").correct is None
    s = "\n\nHuman: Hi! What is 2 plus 3?\n\nAssistant:"
    assert tiny_oracle(s, " Sure! 2 plus 3 is 5.").correct is True
    assert tiny_oracle(s, " Sure! 2 plus 3 is 6.").correct is False
    with pytest.raises(ValueError, match="not a tiny-corpus prompt"):
        tiny_oracle("\n\nHuman: What is love?\n\nAssistant:", " Baby don't hurt me.")


def test_room_for_search_contested_items_split_truth_and_decoy_evenly():
    """SFT on both replies sees truth and decoy ~equally for contested items (a coin flip for
    greedy), in the same phrasings, so content is the reward model's only cue (see tiny.py)."""
    counts: Counter[tuple[bool, bool]] = Counter()
    phrasing: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    for p in tiny_pairs("train"):
        for reply in (p.chosen, p.rejected):
            verdict = tiny_oracle(p.prompt, reply)
            if verdict.correct is None or verdict.rude:
                continue
            fact = next(f for fs in tiny_world().values() for f in fs if f.subject in p.prompt)
            counts[(contested(fact), verdict.correct)] += 1
            if contested(fact):
                phrasing[verdict.correct][reply.split("!", 1)[1].split()[0]] += (
                    1  # after the opener
                )
    right, wrong = counts[(True, True)], counts[(True, False)]
    assert right > 500 and abs(right - wrong) / right < 0.1
    assert counts[(False, False)] == 0  # uncontested items are never answered wrongly
    for word in ("A", "The", "Every", "It", "That"):
        share = [phrasing[c][word] / sum(phrasing[c].values()) for c in (True, False)]
        assert abs(share[0] - share[1]) < 0.05, (word, share)


def test_tiny_through_load_pairs_and_prompts():
    cfg = DataConfig(source="tiny", limit=5)
    assert load_pairs(cfg) == tiny_pairs("train")[:5]
    assert [r.id for r in load_prompts(cfg, "val")] == [p.id for p in tiny_pairs("validation")[:5]]
    assert len(tiny_corpus_texts()) == 8000
    with pytest.raises(DataError, match="tiny corpus has splits"):
        load_pairs(DataConfig(source="tiny"), "dev2")
