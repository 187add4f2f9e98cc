"""Diversity of generations, computed as the original ARGS ``metrics.py`` does.

Tokenization: the original calls ``nltk.word_tokenize``, which splits sentences with the
English Punkt model (downloaded data, ``punkt_tab``) and then word-tokenizes each sentence
with nltk's improved Treebank tokenizer (`NLTKWordTokenizer`). When that data is installed we
call ``nltk.word_tokenize`` itself, so numbers equal the original's. Without it (the usual
offline case) we split sentences with an *untrained* `PunktSentenceTokenizer` (no data
needed) and apply the same `NLTKWordTokenizer`; the two differ only around abbreviations the
English model knows ("Mr. Smith" stays one sentence there, and "Mr." one token). Which path
was used is reported by `tokenizer_name`.

Per response, for n = 2, 3, 4 over its word n-grams::

    rep-n = 1 - unique / (total + 1)        (the original reports 100 x this)
    diversity = (1 - rep-2)(1 - rep-3)(1 - rep-4)

and the reported values are means over responses. The ``+ 1`` is the original's; with
``plus_one=False`` rep-n = 1 - unique / total.

Edge cases: a response with fewer than n tokens has no n-grams. With ``+ 1`` that gives
rep-n = 1 - 0/1 = 1 and so diversity 0 (the original's behaviour, which scores an empty or
one-word answer as fully repetitive). Without ``+ 1`` the ratio 0/0 is defined the same way
(rep-n = 1), so both variants give short responses diversity 0 rather than a perfect 1. The
caller passes continuations already cut at the next turn (empty ones become ``" "``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

NGRAM_ORDERS = (2, 3, 4)


@lru_cache(maxsize=1)
def _tokenize_fn():
    """Return ``(name, tokenize)``: ``nltk.word_tokenize`` if its data is present, else the
    data-free equivalent described in the module docstring."""
    import nltk
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    try:
        nltk.word_tokenize("Probe. Sentence.")
        return "nltk.word_tokenize", nltk.word_tokenize
    except LookupError:
        pass
    sentences, words = PunktSentenceTokenizer(), NLTKWordTokenizer()

    def tokenize(text: str) -> list[str]:
        return [tok for sent in sentences.tokenize(text) for tok in words.tokenize(sent)]

    return "punkt(untrained)+NLTKWordTokenizer", tokenize


def tokenizer_name() -> str:
    """Which word tokenizer `word_tokens` uses on this machine (see the module docstring)."""
    return _tokenize_fn()[0]


def word_tokens(text: str) -> list[str]:
    """Word tokens of `text` as ``nltk.word_tokenize`` would give (see the module docstring)."""
    return _tokenize_fn()[1](text)


def rep_n(tokens: Sequence[str], n: int, plus_one: bool = True) -> float:
    """Fraction of repeated n-grams: ``1 - unique / (total + 1)`` (or ``/ total``).

    Returns a value in [0, 1]; 1 when there are no n-grams at all (see the module docstring).
    """
    ngrams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not ngrams:
        return 1.0
    return 1.0 - len(set(ngrams)) / (len(ngrams) + (1 if plus_one else 0))


@dataclass
class DiversityResult:
    """Means over responses. rep values are fractions (the original's numbers / 100)."""

    diversity: float
    rep_2: float
    rep_3: float
    rep_4: float
    per_response: list[float]
    tokenizer: str


def response_diversity(text: str, plus_one: bool = True) -> tuple[float, dict[int, float]]:
    """Diversity of one response and its rep-n values, keyed by n."""
    tokens = word_tokens(text)
    reps = {n: rep_n(tokens, n, plus_one) for n in NGRAM_ORDERS}
    div = 1.0
    for n in NGRAM_ORDERS:
        div *= 1.0 - reps[n]
    return div, reps


def diversity(continuations: Sequence[str], plus_one: bool = True) -> DiversityResult:
    """Mean diversity and rep-2/3/4 over `continuations` (already cut at the next turn).

    Raises:
        ValueError: no continuations.
    """
    if not continuations:
        raise ValueError("diversity needs at least one continuation")
    divs: list[float] = []
    reps: dict[int, list[float]] = {n: [] for n in NGRAM_ORDERS}
    for text in continuations:
        d, r = response_diversity(text, plus_one)
        divs.append(d)
        for n in NGRAM_ORDERS:
            reps[n].append(r[n])
    k = len(divs)
    return DiversityResult(
        diversity=sum(divs) / k,
        rep_2=sum(reps[2]) / k,
        rep_3=sum(reps[3]) / k,
        rep_4=sum(reps[4]) / k,
        per_response=divs,
        tokenizer=tokenizer_name(),
    )
