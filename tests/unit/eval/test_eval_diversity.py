"""Diversity against hand-computed values."""

from __future__ import annotations

import pytest

from argsfw.eval.diversity import diversity, rep_n, response_diversity, tokenizer_name, word_tokens


def test_rep_n_hand_computed_plus_one():
    toks = ["a", "b", "a", "b"]
    # bigrams ab ba ab: 2 unique of 3 -> 1 - 2/4; trigrams aba bab: 1 - 2/3; 4-gram abab: 1 - 1/2
    assert rep_n(toks, 2) == pytest.approx(0.5)
    assert rep_n(toks, 3) == pytest.approx(1 / 3)
    assert rep_n(toks, 4) == pytest.approx(0.5)


def test_rep_n_without_plus_one():
    toks = ["a", "b", "a", "b"]
    assert rep_n(toks, 2, plus_one=False) == pytest.approx(1 / 3)
    assert rep_n(toks, 3, plus_one=False) == pytest.approx(0.0)
    assert rep_n(toks, 4, plus_one=False) == pytest.approx(0.0)


def test_response_diversity_is_product():
    d, reps = response_diversity("a b a b")
    assert d == pytest.approx(0.5 * (2 / 3) * 0.5)  # 1/6
    assert reps == pytest.approx({2: 0.5, 3: 1 / 3, 4: 0.5})
    assert response_diversity("a b a b", plus_one=False)[0] == pytest.approx(2 / 3)


def test_all_distinct_words():
    # 5 tokens: 4 bigrams, 3 trigrams, 2 4-grams, all unique -> (4/5)(3/4)(2/3) = 2/5
    assert response_diversity("a b c d e")[0] == pytest.approx(0.4)
    assert response_diversity("a b c d e", plus_one=False)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("text", [" ", "", "word", "two words", "three words here"])
def test_short_responses_score_zero(text):
    # fewer than 4 tokens: no 4-grams -> rep-4 = 1 -> diversity 0 (the original's behaviour)
    assert response_diversity(text)[0] == 0.0
    assert response_diversity(text, plus_one=False)[0] == 0.0


def test_mean_over_responses_and_fields():
    res = diversity(["a b a b", "a b c d e"])
    assert res.diversity == pytest.approx((1 / 6 + 0.4) / 2)
    assert res.rep_2 == pytest.approx((0.5 + 1 - 4 / 5) / 2)
    assert res.per_response == pytest.approx([1 / 6, 0.4])
    assert res.tokenizer == tokenizer_name()


def test_word_tokens_treebank_style_offline():
    # punctuation and clitics split as nltk.word_tokenize does; sentence-final periods too
    assert word_tokens("It's fine, isn't it? Yes. Sure.") == [
        "It", "'s", "fine", ",", "is", "n't", "it", "?", "Yes", ".", "Sure", ".",
    ]  # fmt: skip


def test_empty_input_raises():
    with pytest.raises(ValueError):
        diversity([])
