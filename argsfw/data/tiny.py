"""An embedded tiny preference corpus about a small generated world, and its ground-truth oracle.

Why it exists: every ``tiny_*`` recipe must train SFT, RM and PPO on a CPU in minutes and show
that reward-guided search beats greedy decoding. Real HH-RLHF is far too hard for a 2-layer
model, so the corpus is generated here (no copied data) from four question kinds about a
fixed invented world: the colour of a fruit, the sound of an animal, a sum of two small
numbers, the capital of a country. Prompts are HH-formatted
(``"\\n\\nHuman: ...\\n\\nAssistant:"``), responses keep a leading space.

Chosen replies are polite and correct. Every item of the world is either *contested* (half
of each kind, fixed) or not, and that decides its rejected reply:

* contested items: ``wrong`` — polite, in the same phrasings as the chosen reply, but with the
  item's fixed *decoy* value (a popular misconception);
* other items: ``rude`` (half) — correct but rude ("Ugh, fine. ... Stop asking me."), or
  ``off_topic`` (half) — polite, but about something else.

Room for search, by design: an SFT policy trained on *both* replies sees the truth and the
decoy equally often for a contested item, so its greedy decode is a coin flip there, while a
reward model learns which one is right. Rejected replies share the chosen replies' phrasings,
so the only cue separating chosen from rejected is the content (no phrasing shortcut for the
reward model to exploit). The deciding word comes within the first ~10 tokens, where a reward
model scoring partial sequences can steer each token. The world is fixed (seed-independent) so
that `tiny_oracle` needs no seed; ``seed`` only changes which questions and replies are drawn.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from argsfw.data.types import DataError, PreferencePair

TINY_SIZES = {"train": 4000, "validation": 400, "test": 400}
_WORLD_SEED = 1234
_N_ITEMS = 12
_SYLLABLES = [
    "ba",
    "ko",
    "ri",
    "mu",
    "te",
    "la",
    "zo",
    "pi",
    "nu",
    "sa",
    "ve",
    "do",
    "fi",
    "ga",
    "lu",
    "ne",
]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "white"]
SOUNDS = ["moo", "woof", "meow", "quack", "oink", "neigh", "baa", "hiss"]
POLITE = ["Sure!", "Of course!", "Happy to help!", "Good question!"]
RUDE_OPENERS = ["Ugh, fine.", "Whatever."]
RUDE_MARKERS = ("Ugh", "Whatever", "Stop asking", "dumb")
CLOSERS = ["", " I hope that helps.", " Have a nice day!"]
OFF_TOPIC = [
    "I like to sing songs.",
    "The weather is nice today.",
    "Let us talk about boats instead.",
    "I had soup for lunch.",
]
NAMES = [
    "Ada",
    "Ben",
    "Cleo",
    "Dan",
    "Eve",
    "Finn",
    "Gia",
    "Hal",
    "Ivy",
    "Jon",
    "Kim",
    "Leo",
    "Mia",
    "Ned",
    "Ola",
    "Pat",
]
GREETINGS = ["Hi!", "Hello.", "Quick question:", "Hey, {name} here."]

QUESTIONS = {
    "colour": [
        "What colour is a {x}?",
        "What is the colour of a {x}?",
        "Which colour does a {x} have?",
    ],
    "sound": [
        "What sound does a {x} make?",
        "What does a {x} say?",
        "Which sound does a {x} make?",
    ],
    "sum": ["What is {x}?", "How much is {x}?", "Can you tell me {x}?"],
    "capital": [
        "What is the capital of {x}?",
        "Which city is the capital of {x}?",
        "Name the capital of {x}.",
    ],
}
# Three phrasings per kind; chosen and rejected replies draw from them alike.
ANSWERS = {
    "colour": ["A {x} is {v}.", "The colour of a {x} is {v}.", "Every {x} is {v}."],
    "sound": ["A {x} says {v}.", "The {x} makes a {v} sound.", "Every {x} says {v}."],
    # Sums never restate their operands: a restated (mis-copied) operand would let a policy
    # write "2 plus 2 is 4" for "2 plus 3", which looks right to a small reward model.
    "sum": ["It is {v}.", "The answer is {v}.", "That makes {v}."],
    "capital": ["The capital of {x} is {v}.", "It is {v}.", "{v} is the capital of {x}."],
}


@dataclass(frozen=True)
class Fact:
    """One item of the world: its question kind, subject text, true value and fixed decoy."""

    kind: str
    subject: str
    value: str
    decoy: str


def _names(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(syllables))
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


@lru_cache(maxsize=1)
def tiny_world() -> dict[str, list[Fact]]:
    """The fixed world: 12 fruits, 12 animals, 12 countries with capitals, 25 sums (1..5 + 1..5)."""
    rng = random.Random(_WORLD_SEED)
    taken: set[str] = set()
    fruits, animals = _names(rng, _N_ITEMS, 2, taken), _names(rng, _N_ITEMS, 2, taken)
    countries = [c.capitalize() for c in _names(rng, _N_ITEMS, 3, taken)]
    cities = [c.capitalize() + "ton" for c in _names(rng, _N_ITEMS, 2, taken)]

    def facts(kind: str, subjects: list[str], values: list[str], pool: list[str]) -> list[Fact]:
        return [
            Fact(kind, s, v, rng.choice([p for p in pool if p != v]))
            for s, v in zip(subjects, values)
        ]

    sums = [(a, b) for a in range(1, 6) for b in range(1, 6)]
    return {
        "colour": facts("colour", fruits, [rng.choice(COLOURS) for _ in fruits], COLOURS),
        "sound": facts("sound", animals, [rng.choice(SOUNDS) for _ in animals], SOUNDS),
        "capital": facts("capital", countries, cities, cities),
        "sum": [
            Fact("sum", f"{a} plus {b}", str(a + b), str(a + b + rng.choice([-1, 1])))
            for a, b in sums
        ],
    }


def _prompt(rng: random.Random, fact: Fact) -> str:
    question = rng.choice(QUESTIONS[fact.kind]).format(x=fact.subject)
    name = rng.choice(NAMES)
    style = rng.randrange(3)
    if style == 0:
        return f"\n\nHuman: {question}\n\nAssistant:"
    if style == 1:
        greeting = rng.choice(GREETINGS).format(name=name)
        return f"\n\nHuman: {greeting} {question}\n\nAssistant:"
    return f"\n\nHuman: Hi, I am {name}.\n\nAssistant: Hello {name}! How can I help?\n\nHuman: {question}\n\nAssistant:"


def _answer(fact: Fact, phrasing: int, value: str) -> str:
    return ANSWERS[fact.kind][phrasing].format(x=fact.subject, v=value)


def contested(fact: Fact) -> bool:
    """Whether `fact` is one of the contested items (every other item of its kind, fixed)."""
    return tiny_world()[fact.kind].index(fact) % 2 == 0


def _replies(rng: random.Random, fact: Fact) -> tuple[str, str, str]:
    """(chosen, rejected, rejected kind) for one question."""
    opener, phrasing, closer = rng.choice(POLITE), rng.randrange(3), rng.choice(CLOSERS)
    chosen = f" {opener} {_answer(fact, phrasing, fact.value)}{closer}"
    if contested(fact):
        wrong = _answer(fact, rng.randrange(3), fact.decoy)
        return chosen, f" {rng.choice(POLITE)} {wrong}{rng.choice(CLOSERS)}", "wrong"
    if rng.random() < 0.5:
        rude = _answer(fact, rng.randrange(3), fact.value)
        return chosen, f" {rng.choice(RUDE_OPENERS)} {rude} Stop asking me.", "rude"
    # Off-topic replies get the same closers as chosen ones: otherwise "has a closer" would be
    # a shortcut the reward model learns instead of the content.
    return (
        chosen,
        f" {rng.choice(POLITE)} {rng.choice(OFF_TOPIC)}{rng.choice(CLOSERS)}",
        "off_topic",
    )


@lru_cache(maxsize=4)
def _corpus(seed: int) -> dict[str, tuple[PreferencePair, ...]]:
    rng = random.Random(seed)
    facts = tiny_world()
    kinds = sorted(facts)
    total = sum(TINY_SIZES.values())
    prompts: dict[str, Fact] = {}
    while len(prompts) < total:  # unique prompts, so the splits share none
        fact = rng.choice(facts[rng.choice(kinds)])
        prompts.setdefault(_prompt(rng, fact), fact)
    items = list(prompts.items())
    out: dict[str, tuple[PreferencePair, ...]] = {}
    start = 0
    for split, n in TINY_SIZES.items():
        pairs = []
        for i, (prompt, fact) in enumerate(items[start : start + n]):
            chosen, rejected, _ = _replies(rng, fact)
            pairs.append(
                PreferencePair(
                    prompt=prompt, chosen=chosen, rejected=rejected, id=f"tiny-{split}-{i:05d}"
                )
            )
        out[split] = tuple(pairs)
        start += n
    return out


_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "eval": "test"}


def tiny_split_name(split: str) -> str:
    """The tiny corpus' name for `split` (``val``/``dev`` → ``validation``, ``eval`` → ``test``)."""
    return _SPLIT_ALIASES.get(split, split)


def tiny_pairs(split: str = "train", seed: int = 0) -> list[PreferencePair]:
    """The tiny corpus' pairs of `split` (train 4000 / validation 400 / test 400), deterministic in `seed`.

    Raises `DataError` for an unknown split name.
    """
    name = tiny_split_name(split)
    corpus = _corpus(seed)
    if name not in corpus:
        raise DataError(f"the tiny corpus has splits {', '.join(TINY_SIZES)}; got {split!r}")
    return list(corpus[name])


def tiny_corpus_texts(seed: int = 0) -> list[str]:
    """Whole dialogues (prompt + chosen, prompt + rejected) of the train split, to train a BPE on."""
    return [t for p in tiny_pairs("train", seed) for t in (p.chosen_text, p.rejected_text)]


# ---------------------------------------------------------------- oracle


@dataclass(frozen=True)
class OracleVerdict:
    """The oracle's reading of one response.

    ``correct`` is True/False for a right/wrong answer and None when no answer was found;
    ``score`` = (+1 right, 0 none, -1 wrong) + (+0.5 polite opener, -0.5 rude), in [-1.5, 1.5].
    """

    kind: str
    correct: bool | None
    polite: bool
    rude: bool
    score: float


@lru_cache(maxsize=1)
def _question_index() -> list[tuple[re.Pattern, dict[str, Fact]]]:
    world = tiny_world()
    index = []
    for kind, templates in QUESTIONS.items():
        by_subject = {f.subject: f for f in world[kind]}
        alts = "|".join(re.escape(s) for s in sorted(by_subject, key=len, reverse=True))
        for t in templates:
            pattern = re.escape(t).replace(re.escape("{x}"), f"(?P<x>{alts})")
            index.append((re.compile(pattern), by_subject))
    return index


def _find_fact(prompt: str) -> Fact:
    last_turn = prompt.rsplit("Human:", 1)[-1]
    for pattern, by_subject in _question_index():
        m = pattern.search(last_turn)
        if m:
            return by_subject[m.group("x")]
    raise ValueError(f"not a tiny-corpus prompt (no known question in {last_turn.strip()[:80]!r})")


def _first_answer(fact: Fact, text: str) -> str | None:
    if fact.kind == "sum":
        text = text.replace(fact.subject, " ")  # "2 plus 3 is 5": the operands are no answer
        m = re.search(r"\b\d+\b", text)
        return m.group(0) if m else None
    pool = {
        "colour": COLOURS,
        "sound": SOUNDS,
        "capital": [f.value for f in tiny_world()["capital"]],
    }[fact.kind]
    hits = [
        (m.start(), v)
        for v in pool
        for m in [re.search(rf"\b{re.escape(v)}\b", text, re.IGNORECASE)]
        if m
    ]
    return min(hits)[1] if hits else None


def tiny_oracle(prompt: str, response: str) -> OracleVerdict:
    """Judge a response to a tiny-corpus prompt by the world's ground truth.

    The response is cut at the first ``Human:`` (as the original evaluation did). Raises
    ValueError when `prompt` holds no tiny-corpus question.
    """
    fact = _find_fact(prompt)
    text = re.split(r"human:", response, maxsplit=1, flags=re.IGNORECASE)[0]
    answer = _first_answer(fact, text)
    correct = None if answer is None else answer.lower() == fact.value.lower()
    rude = any(m.lower() in text.lower() for m in RUDE_MARKERS)
    polite = not rude and text.lstrip().startswith(tuple(POLITE))
    score = (
        {True: 1.0, None: 0.0, False: -1.0}[correct]
        + (0.5 if polite else 0.0)
        - (0.5 if rude else 0.0)
    )
    return OracleVerdict(kind=fact.kind, correct=correct, polite=polite, rude=rude, score=score)


def tiny_oracle_score(prompt: str, response: str) -> float:
    """Ground-truth score of a response to a tiny-corpus prompt (higher is better; see `tiny_oracle`)."""
    return tiny_oracle(prompt, response).score
