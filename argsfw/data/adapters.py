"""Source adapters: one raw record of each known layout -> a `Parsed` prompt/chosen/rejected.

Edge cases of real HH-RLHF data, and what is done with each (counted in `DataStats`):

==========================  =========================================  ===================
case                        example                                    pairs / prompts
==========================  =========================================  ===================
``context_mismatch``        chosen and rejected differ before their    dropped / dropped
                            last ``"\\n\\nAssistant:"`` (a reply with
                            inline ``Human:`` turns, an extra turn)
``no_assistant_turn``       a dialogue without ``"\\n\\nAssistant:"``  dropped / dropped
``empty_response``          chosen or rejected reply is blank          dropped / kept
``identical``               chosen == rejected: no preference signal   dropped / kept
``reply_has_human_turn``    a reply that contains ``Human:`` text      kept, flagged
==========================  =========================================  ===================

Prompts are still well defined for empty / identical replies, so `load_prompts` keeps those.
A reply with ``Human:`` text is real model behaviour the reward model should see; evaluation
cuts continuations at ``Human:`` as the original did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
PAIR_FIELDS = ("prompt", "chosen", "rejected", "id")

# Problems that make the prompt itself ill-defined (dropped for prompts too).
PROMPT_PROBLEMS = frozenset({"context_mismatch", "no_assistant_turn"})


class MissingField(KeyError):
    """A record lacks a field its layout requires (turned into a located `DataError`)."""


class BadField(ValueError):
    """A record's field has an unusable value (turned into a located `DataError`)."""


@dataclass
class Parsed:
    """One record after parsing; ``problem`` names why `load_pairs` would drop it, if at all."""

    prompt: str
    chosen: str | None
    rejected: str | None
    id: str
    prompt_id: str  # records sharing a prompt_id share a prompt (SHP: post_id)
    domain: str = ""  # the source folder (or file) the record came from, when several
    problem: str | None = None
    flags: list[str] = field(default_factory=list)
    messages: tuple[dict[str, Any], ...] | None = None  # the prompt as chat messages, if given so


@dataclass(frozen=True)
class Ctx:
    """What an adapter needs besides the record: its fallback id and field names."""

    id_prefix: str
    fields: dict[str, str]
    responses: bool  # False when only prompts are wanted (chosen/rejected may be absent)


def _get(rec: dict[str, Any], name: str) -> Any:
    value = rec.get(name)
    if value is None:
        raise MissingField(name)
    return value


def _text(rec: dict[str, Any], name: str) -> str:
    value = _get(rec, name)
    if not isinstance(value, str):
        raise BadField(f"field {name!r} is {type(value).__name__}, expected a string")
    return value


def _record_id(rec: dict[str, Any], name: str, index: int, ctx: Ctx) -> str:
    value = rec.get(name)
    return str(value) if value is not None else f"{ctx.id_prefix}-{index}"


def _check_pair(p: Parsed) -> Parsed:
    """Flag the pair-level problems every source shares (blank or identical replies)."""
    if p.problem is None and p.chosen is not None and p.rejected is not None:
        if not p.chosen.strip() or not p.rejected.strip():
            p.problem = "empty_response"
        elif p.chosen == p.rejected:
            p.problem = "identical"
    return p


def split_hh(dialogue: str) -> tuple[str, str] | None:
    """Split an HH dialogue into (prompt up to and including the last ``"\\n\\nAssistant:"``, reply)."""
    i = dialogue.rfind(ASSISTANT)
    if i < 0:
        return None
    cut = i + len(ASSISTANT)
    return dialogue[:cut], dialogue[cut:]


def parse_hh_rlhf(rec: dict[str, Any], index: int, ctx: Ctx) -> Parsed:
    """Anthropic HH-RLHF raw layout: ``{"chosen": dialogue, "rejected": dialogue}``."""
    chosen, rejected = _text(rec, "chosen"), _text(rec, "rejected")
    rid = _record_id(rec, "id", index, ctx)
    c, r = split_hh(chosen), split_hh(rejected)
    if c is None or r is None:
        return Parsed(chosen, None, None, rid, rid, problem="no_assistant_turn")
    p = Parsed(c[0], c[1], r[1], rid, rid)
    if c[0] != r[0]:
        p.problem = "context_mismatch"
    if "Human:" in c[1] or "Human:" in r[1]:
        p.flags.append("reply_has_human_turn")
    return _check_pair(p)


def parse_dahoas(rec: dict[str, Any], index: int, ctx: Ctx) -> Parsed:
    """Dahoas/full-hh-rlhf layout: ``prompt``, ``response``, ``chosen``, ``rejected`` (replies only)."""
    rid = _record_id(rec, "id", index, ctx)
    prompt = _text(rec, "prompt")
    if not ctx.responses:
        return Parsed(prompt, None, None, rid, rid)
    return _check_pair(Parsed(prompt, _text(rec, "chosen"), _text(rec, "rejected"), rid, rid))


def shp_prompt(history: str) -> str:
    """The prompt the original ARGS code built from an SHP ``history``."""
    return " Human: " + history + " Assistant: "


def parse_shp(rec: dict[str, Any], index: int, ctx: Ctx) -> Parsed:
    """Stanford SHP layout: ``post_id``, ``history``, ``human_ref_A/B``, ``labels`` (1 = A preferred).

    The pair id is filled in by the loader (``post_id`` plus occurrence number); the prompt
    id is the ``post_id``, so prompts come one per post.
    """
    post_id = str(_get(rec, "post_id"))
    prompt = shp_prompt(_text(rec, "history"))
    if not ctx.responses:
        return Parsed(prompt, None, None, post_id, post_id)
    a, b, label = _text(rec, "human_ref_A"), _text(rec, "human_ref_B"), _get(rec, "labels")
    if label not in (0, 1):
        raise BadField(f"field 'labels' is {label!r}, expected 1 (A preferred) or 0 (B preferred)")
    chosen, rejected = (a, b) if label == 1 else (b, a)
    return _check_pair(Parsed(prompt, chosen, rejected, post_id, post_id))


def parse_json(rec: dict[str, Any], index: int, ctx: Ctx) -> Parsed:
    """Generic JSON/JSONL: field names from ``DataConfig.fields`` (defaults: prompt/chosen/rejected/id)."""
    f = ctx.fields
    rid = _record_id(rec, f["id"], index, ctx)
    prompt = _text(rec, f["prompt"])
    if not ctx.responses:
        return Parsed(prompt, None, None, rid, rid)
    return _check_pair(Parsed(prompt, _text(rec, f["chosen"]), _text(rec, f["rejected"]), rid, rid))


def _messages(value: Any, name: str) -> list[dict[str, str]] | None:
    """`value` as chat messages ``[{role, content}]``, or None when it is a string.

    Raises `BadField` for anything else (TRL's formats allow these two)."""
    if isinstance(value, str):
        return None
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise BadField(
        f"field {name!r} is {type(value).__name__}, expected a string or a list of chat messages "
        "[{role, content}] (TRL's standard or conversational format)"
    )


def hh_text(messages: list[dict[str, str]]) -> str:
    """Chat messages in the raw HH layout (``\n\nHuman: ...\n\nAssistant: ...``); a system
    turn is kept as plain text before the first turn."""
    mark = {"user": HUMAN, "assistant": ASSISTANT}
    return "".join(
        f"{mark[m['role']]} {m['content']}" if m["role"] in mark else m["content"] for m in messages
    )


def _reply(messages: list[dict[str, str]], name: str) -> str:
    """A completion's text: its assistant messages, with the leading space of the raw layout."""
    if any(m["role"] != "assistant" for m in messages):
        raise BadField(
            f"field {name!r}: a completion after the prompt holds assistant messages only"
        )
    return " " + "\n".join(m["content"] for m in messages)


def _shared_start(a, b) -> int:
    """How many leading items (characters, or messages) `a` and `b` share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def parse_trl(rec: dict[str, Any], index: int, ctx: Ctx) -> Parsed:
    """TRL's dataset formats (``trl`` source): preference ``{prompt, chosen, rejected}`` or
    prompt-only ``{prompt}``, each field a string (standard) or a list of chat messages
    (conversational). A preference record without a prompt of the replies' type has it
    implicitly: the start chosen and rejected share (UltraFeedback-binarized: a string prompt
    beside full conversations), as TRL reads it. Messages become the raw HH text
    (``data.prompt_format=raw``) and are kept for the chat template (``chat``).
    """
    f = ctx.fields
    rid = rec.get(f["id"], rec.get("prompt_id"))
    rid = str(rid) if rid is not None else f"{ctx.id_prefix}-{index}"
    prompt = rec.get(f["prompt"])
    if rec.get(f["chosen"]) is None and rec.get(f["rejected"]) is None:  # prompt-only
        if ctx.responses:
            raise MissingField(f["chosen"])
        msgs = _messages(_get(rec, f["prompt"]), f["prompt"])
        text = hh_text(msgs) + ASSISTANT if msgs else prompt
        return Parsed(text, None, None, rid, rid, messages=tuple(msgs) if msgs else None)
    chosen, rejected = _get(rec, f["chosen"]), _get(rec, f["rejected"])
    cm, rm = _messages(chosen, f["chosen"]), _messages(rejected, f["rejected"])
    if (cm is None) != (rm is None):
        raise BadField("fields 'chosen' and 'rejected' must both be strings or both message lists")
    pm = _messages(prompt, f["prompt"]) if prompt is not None else None
    if prompt is None or (pm is None) != (cm is None):  # implicit: the shared start
        n = _shared_start(cm or chosen, rm or rejected)
        if cm is None:
            n -= n > 0 and chosen[n - 1] == " "  # the space before a reply stays with it
            prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        else:
            n -= n == len(cm) == len(rm)  # identical conversations: the last turn is the reply
            pm, cm, rm = cm[:n], cm[n:], rm[n:]
    if cm is None:
        return _check_pair(Parsed(prompt, chosen, rejected, rid, rid))
    if not pm:
        return Parsed(hh_text(cm), None, None, rid, rid, problem="no_assistant_turn")
    p = Parsed(hh_text(pm) + ASSISTANT, _reply(cm, "chosen"), _reply(rm, "rejected"), rid, rid)
    p.messages = tuple(pm)
    return _check_pair(p)


Adapter = Callable[[dict[str, Any], int, Ctx], Parsed]

ADAPTERS: dict[str, Adapter] = {
    "hh_rlhf": parse_hh_rlhf,
    "dahoas": parse_dahoas,
    "shp": parse_shp,
    "json": parse_json,
    "trl": parse_trl,
}

EXPECTED_FIELDS = {
    "hh_rlhf": "chosen, rejected (whole dialogues)",
    "dahoas": "prompt, chosen, rejected",
    "shp": "post_id, history, human_ref_A, human_ref_B, labels",
    "json": "the names in data.fields",
    "trl": "prompt, chosen, rejected (strings or chat message lists), or prompt alone",
}
