"""Prompt formats: the raw ``Human:/Assistant:`` text of HH-RLHF, or the model's chat turns.

``data.prompt_format=raw`` (the default, as the paper's OPT/Llama models were trained) keeps a
prompt as the dataset writes it. ``data.prompt_format=chat`` renders the dialogue with the
tokenizer's chat template (``apply_chat_template(..., add_generation_prompt=True)``), which
an instruction-tuned model such as SmolLM2-Instruct needs: on the raw format it loops.

Rendering happens once, in `argsfw.data.loading`, after the validation carve and selection,
so every stage that reads the same data (SFT and RM pairs in fit, prompts in predict and
PPO) sees the same text, and predict writes the rendered prompt into its records, so
evaluate's reward model reads exactly what it was trained on.
"""

from __future__ import annotations

import re

from argsfw.data.types import DataError, PreferencePair, PromptRecord

PROMPT_FORMATS = ("raw", "chat")
# HH turn markers (SHP's prompts use the same words without the blank line)
_TURN = re.compile(r"\s*\b(Human|Assistant|HUMAN|ASSISTANT):\s?")
_ROLES = {"human": "user", "assistant": "assistant"}


def hh_turns(prompt: str) -> list[dict[str, str]]:
    """Chat messages of an HH-style prompt; the closing empty assistant marker is dropped.

    Text before the first marker (or a prompt with no marker at all) is a user turn.
    """
    parts = _TURN.split(prompt)
    messages: list[dict[str, str]] = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for marker, text in zip(parts[1::2], parts[2::2]):
        role = _ROLES[marker.lower()]
        if messages and messages[-1]["role"] == role:  # two turns of one speaker: one message
            messages[-1]["content"] += "\n" + text.strip()
        else:
            messages.append({"role": role, "content": text.strip()})
    while messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def check_chat_tokenizer(tokenizer, where: str = "data.prompt_format=chat") -> None:
    """Raise `DataError` when ``tokenizer`` has no chat template to render prompts with."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "the tokenizer")
        raise DataError(
            f"{where} needs a tokenizer with a chat template, but {name!r} has none; "
            "use data.prompt_format=raw for a model trained on raw Human:/Assistant: text"
        )


def render_prompt(tokenizer, prompt: str, messages=None) -> str:
    """The chat-template text of a prompt, ending with the assistant's opening: its chat
    `messages` when the data gave them, else the turns of an HH-style (or plain) prompt."""
    turns = [dict(m) for m in messages] if messages else hh_turns(prompt)
    return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)


def render_pairs(tokenizer, pairs: list[PreferencePair]) -> list[PreferencePair]:
    """Pairs with chat-rendered prompts; replies lose the leading space the raw format keeps."""
    check_chat_tokenizer(tokenizer)
    return [
        PreferencePair(
            prompt=render_prompt(tokenizer, p.prompt, p.messages),
            chosen=p.chosen.strip(),
            rejected=p.rejected.strip(),
            id=p.id,
            domain=p.domain,
            messages=p.messages,
        )
        for p in pairs
    ]


def render_prompts(tokenizer, records: list[PromptRecord]) -> list[PromptRecord]:
    """Prompt records with chat-rendered prompts (same ids)."""
    check_chat_tokenizer(tokenizer)
    return [
        PromptRecord(
            id=r.id, prompt=render_prompt(tokenizer, r.prompt, r.messages), messages=r.messages
        )
        for r in records
    ]
