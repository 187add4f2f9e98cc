"""The shapes every data source is turned into, the load statistics and the data error.

Every adapter (HH-RLHF raw, Dahoas layout, SHP, generic JSON, the embedded tiny corpus)
produces the same `PreferencePair`; decoding reads the prompt-only `PromptRecord`. Keeping
one shape means the DataModules, the collators and the evaluation never branch on the source.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


class DataError(ValueError):
    """A data source is missing or malformed. ``str(exc)`` is one line naming file and record."""


@dataclass(frozen=True)
class PreferencePair:
    """One preference comparison.

    ``chosen`` and ``rejected`` are the *responses only*; the full texts the reward model
    scores are ``prompt + chosen`` and ``prompt + rejected`` (responses keep their leading
    space, prompts end with the assistant marker, so concatenation is exact).
    """

    prompt: str
    chosen: str
    rejected: str
    id: str
    # where the pair comes from when a source mixes several (HH-RLHF: "harmless-base" or
    # "helpful-base"); the length-by-domain baseline (argsfw.rlhf.pairwise) reads it
    domain: str = ""
    # the prompt as chat messages when the data gave it so (TRL's conversational format):
    # ``data.prompt_format=chat`` renders these, not the raw text
    messages: tuple[dict[str, Any], ...] | None = field(default=None, compare=False, repr=False)

    @property
    def chosen_text(self) -> str:
        """``prompt + chosen``: the whole preferred dialogue."""
        return self.prompt + self.chosen

    @property
    def rejected_text(self) -> str:
        """``prompt + rejected``: the whole dispreferred dialogue."""
        return self.prompt + self.rejected

    def to_prompt(self) -> PromptRecord:
        """The prompt-only view of this pair (same id)."""
        return PromptRecord(id=self.id, prompt=self.prompt, messages=self.messages)


@dataclass(frozen=True)
class PromptRecord:
    """A prompt to decode from, with the stable id that predict resumes by."""

    id: str
    prompt: str
    messages: tuple[dict[str, Any], ...] | None = field(default=None, compare=False, repr=False)


@dataclass
class DataStats:
    """What a load read, kept and dropped (per reason), and what it kept but flagged.

    ``read`` counts source records of the requested split (after any validation carve);
    ``kept`` counts the items returned (after dropping and selection); ``selected_out``
    counts items removed by offset / limit / run_percent, which are not "dropped".
    """

    source: str = ""
    split: str = ""
    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    selected_out: int = 0

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` records dropped for `reason`."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def flag(self, reason: str, n: int = 1) -> None:
        """Count `n` records kept but noteworthy for `reason`."""
        self.flagged[reason] = self.flagged.get(reason, 0) + n

    @property
    def n_dropped(self) -> int:
        """Total records dropped, all reasons together."""
        return sum(self.dropped.values())

    def as_dict(self) -> dict:
        """A JSON-ready dict (for run meta and logging)."""
        return asdict(self)

    def __str__(self) -> str:
        def fmt(c: dict[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(Counter(c).items())) or "none"

        return (
            f"{self.source}[{self.split}]: read {self.read}, kept {self.kept}, "
            f"dropped {self.n_dropped} ({fmt(self.dropped)}), flagged {fmt(self.flagged)}, "
            f"selected out {self.selected_out}"
        )
