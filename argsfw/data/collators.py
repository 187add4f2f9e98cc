"""Tokenizing pairs and prompts once, and collating them into padded batches.

Prompt and response are tokenized *separately* and concatenated: that is exactly what the
models see at decode time (the prompt is tokenized alone with the tokenizer's defaults, BOS
included, then tokens are appended), so training and search agree on token boundaries.
Padding is ``torch.nn.utils.rnn.pad_sequence`` (right for SFT/RM, left for prompts);
``tokenizer.pad`` cannot pad label lists and would need a mutable tokenizer padding side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from argsfw.data.types import PreferencePair, PromptRecord

IGNORE_INDEX = -100
SFT_TARGETS = ("chosen", "both")


@dataclass
class TruncationCounts:
    """How many examples were cut to fit: prompts left-truncated, responses right-truncated,
    and examples dropped because no response token was left to learn from."""

    prompts: int = 0
    responses: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """A JSON-ready dict."""
        return asdict(self)


def pad_id_of(tokenizer) -> int:
    """The tokenizer's pad id, else its EOS id. Raises ValueError when it has neither."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError(
            "the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token first"
        )
    return pad


def _left_truncate(ids: list[int], max_len: int, bos_id: int | None) -> list[int]:
    """Keep the last `max_len` ids (the end of a prompt carries the assistant marker), and the BOS."""
    if len(ids) <= max_len:
        return ids
    if bos_id is not None and ids and ids[0] == bos_id and max_len > 1:
        return [bos_id] + ids[len(ids) - max_len + 1 :]
    return ids[len(ids) - max_len :]


def encode_prompts(
    tokenizer, prompts: Sequence[str], max_prompt_length: int, counts: TruncationCounts
) -> list[list[int]]:
    """Token ids of each prompt (special tokens as the tokenizer adds them), left-truncated."""
    if not prompts:  # fast tokenizers raise IndexError on an empty batch
        return []
    out = []
    for ids in tokenizer(list(prompts))["input_ids"]:
        if len(ids) > max_prompt_length:
            counts.prompts += 1
        out.append(_left_truncate(ids, max_prompt_length, tokenizer.bos_token_id))
    return out


def encode_responses(tokenizer, responses: Sequence[str], add_eos: bool) -> list[list[int]]:
    """Token ids of each response (no special tokens), with EOS appended when `add_eos`."""
    if not responses:
        return []
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    return [ids + eos for ids in tokenizer(list(responses), add_special_tokens=False)["input_ids"]]


def _fit(
    prompt: list[int], response: list[int], max_length: int, counts: TruncationCounts
) -> list[int]:
    room = max(0, max_length - len(prompt))
    if len(response) > room:
        counts.responses += 1
    return response[:room]


def tokenize_sft(
    tokenizer,
    pairs: Sequence[PreferencePair],
    max_length: int,
    max_prompt_length: int,
    target: str = "chosen",
    loss_on_prompt: bool = False,
) -> tuple[list[dict], TruncationCounts]:
    """SFT examples ``{"input_ids", "labels"}``: prompt + response + EOS, one per pair
    (``target="chosen"``) or two (``"both"``: chosen and rejected, as a base model mixes
    good and bad behaviour). Labels are -100 on prompt tokens unless `loss_on_prompt`.
    Raises ValueError for an unknown `target`.
    """
    if target not in SFT_TARGETS:
        raise ValueError(f"unknown SFT target {target!r}; choose one of {SFT_TARGETS}")
    counts = TruncationCounts()
    max_prompt = min(
        max_prompt_length, max_length - 1
    )  # leave room for at least one response token
    prompts = encode_prompts(tokenizer, [p.prompt for p in pairs], max_prompt, counts)
    replies = [[p.chosen] if target == "chosen" else [p.chosen, p.rejected] for p in pairs]
    flat = encode_responses(tokenizer, [r for rs in replies for r in rs], add_eos=True)
    examples, k = [], 0
    for prompt, rs in zip(prompts, replies):
        for _ in rs:
            response = _fit(prompt, flat[k], max_length, counts)
            k += 1
            if not response and not loss_on_prompt:
                counts.dropped += 1
                continue
            labels = (prompt if loss_on_prompt else [IGNORE_INDEX] * len(prompt)) + response
            examples.append({"input_ids": prompt + response, "labels": labels})
    return examples, counts


def tokenize_rm(
    tokenizer,
    pairs: Sequence[PreferencePair],
    max_length: int,
    max_prompt_length: int,
    add_eos: bool = False,
) -> tuple[list[dict], TruncationCounts]:
    """RM examples ``{"prompt_len", "suffix_len", "chosen", "rejected"}`` (ids of prompt + response).

    No EOS by default: at decode time the reward model scores partial sequences that end in
    an ordinary token, so training on EOS-terminated text would score a different position.
    A tokenizer that closes a text with special tokens (BERT's ``[SEP]``) gets them after the
    response, as ``tokenizer(prompt + response)`` would place them at decode time;
    ``suffix_len`` counts them so prefix cuts keep them.
    """
    from argsfw.models import special_wrap

    counts = TruncationCounts()
    pre, post = special_wrap(tokenizer)
    max_prompt = min(max_prompt_length, max_length - 1)
    if post:
        budget = max_prompt - len(pre) - len(post)
        texts = [p.prompt for p in pairs]
        raw = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        counts.prompts += sum(len(ids) > budget for ids in raw)
        prompts = [pre + ids[max(0, len(ids) - budget) :] for ids in raw]
    else:
        prompts = encode_prompts(tokenizer, [p.prompt for p in pairs], max_prompt, counts)
    chosen = encode_responses(tokenizer, [p.chosen for p in pairs], add_eos)
    rejected = encode_responses(tokenizer, [p.rejected for p in pairs], add_eos)
    room = max_length - len(post)
    examples = []
    for prompt, c, r in zip(prompts, chosen, rejected):
        c_fit, r_fit = _fit(prompt, c, room, counts), _fit(prompt, r, room, counts)
        examples.append(
            {
                "prompt_len": len(prompt),
                "suffix_len": len(post),
                "chosen": prompt + c_fit + post,
                "rejected": prompt + r_fit + post,
            }
        )
    return examples, counts


def tokenize_prompts(
    tokenizer, records: Sequence[PromptRecord], max_prompt_length: int
) -> tuple[list[dict], TruncationCounts]:
    """Prompt examples ``{"input_ids", "id", "prompt"}``, left-truncated to `max_prompt_length`."""
    counts = TruncationCounts()
    ids = encode_prompts(tokenizer, [r.prompt for r in records], max_prompt_length, counts)
    return [{"input_ids": i, "id": r.id, "prompt": r.prompt} for i, r in zip(ids, records)], counts


def _pad(
    rows: Sequence[Sequence[int]], value: int, side: str, length: int | None = None
) -> torch.Tensor:
    tensors = [torch.tensor(r, dtype=torch.long) for r in rows]
    if length is not None:  # pad every row to a common length (pad_sequence pads to the batch max)
        tensors.append(torch.zeros(length, dtype=torch.long))
    out = pad_sequence(tensors, batch_first=True, padding_value=value, padding_side=side)
    return out[: len(rows)] if length is not None else out


def _mask(rows: Sequence[Sequence[int]], side: str, length: int | None = None) -> torch.Tensor:
    return _pad([[1] * len(r) for r in rows], 0, side, length)


class SFTCollator:
    """Right-pads SFT examples: ``input_ids``/``attention_mask``/``labels`` [B, T] (labels -100 on pads)."""

    def __init__(self, tokenizer):
        self.pad_id = pad_id_of(tokenizer)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in features]
        return {
            "input_ids": _pad(ids, self.pad_id, "right"),
            "attention_mask": _mask(ids, "right"),
            "labels": _pad([f["labels"] for f in features], IGNORE_INDEX, "right"),
        }


class RMCollator:
    """Right-pads chosen and rejected sequences to one common length T.

    Returns ``chosen_input_ids``/``chosen_attention_mask``/``rejected_input_ids``/
    ``rejected_attention_mask`` [N, T], ``cut_fraction`` [N] (1.0 = whole response) and
    ``pair_index`` [N], ``length_rule`` [N] (the length-by-domain baseline's verdict on the pair:
    1 right, 0 wrong, 0.5 a length tie; `argsfw.rlhf.length_rule`). With ``prefix_cuts=K`` each pair also yields K prefix rows, cut at the
    same relative points j/(K+1) of each response (at least one response token), so the
    reward model can learn to rank partial responses as it must during search. Rows are
    ordered: the B whole pairs first, then cut 1 of every pair, ..., so N = B·(1+K).
    """

    def __init__(self, tokenizer, prefix_cuts: int = 0):
        if prefix_cuts < 0:
            raise ValueError(f"prefix_cuts must be >= 0, got {prefix_cuts}")
        self.pad_id = pad_id_of(tokenizer)
        self.prefix_cuts = prefix_cuts

    @staticmethod
    def _cut(seq: list[int], prompt_len: int, frac: float, suffix_len: int = 0) -> list[int]:
        end = len(seq) - suffix_len  # closing special tokens (BERT's [SEP]) stay
        n = end - prompt_len
        return seq[: prompt_len + (max(1, round(frac * n)) if n > 0 else 0)] + seq[end:]

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        fracs = [1.0] + [j / (self.prefix_cuts + 1) for j in range(1, self.prefix_cuts + 1)]
        chosen, rejected, cut, index, rule = [], [], [], [], []
        for frac in fracs:
            for i, f in enumerate(features):
                rule.append(f.get("length_rule", 0.5))
                post = f.get("suffix_len", 0)
                chosen.append(self._cut(f["chosen"], f["prompt_len"], frac, post))
                rejected.append(self._cut(f["rejected"], f["prompt_len"], frac, post))
                cut.append(frac)
                index.append(i)
        length = max(len(s) for s in chosen + rejected)
        return {
            "chosen_input_ids": _pad(chosen, self.pad_id, "right", length),
            "chosen_attention_mask": _mask(chosen, "right", length),
            "rejected_input_ids": _pad(rejected, self.pad_id, "right", length),
            "rejected_attention_mask": _mask(rejected, "right", length),
            "cut_fraction": torch.tensor(cut, dtype=torch.float32),
            "pair_index": torch.tensor(index, dtype=torch.long),
            "length_rule": torch.tensor(rule, dtype=torch.float32),
        }


class PromptCollator:
    """Left-pads prompts for generation: ``input_ids``/``attention_mask`` [B, T], plus the
    ``ids`` and ``prompts`` (lists of str) that predict writes next to each output."""

    def __init__(self, tokenizer):
        self.pad_id = pad_id_of(tokenizer)

    def __call__(self, features: list[dict]) -> dict:
        ids = [f["input_ids"] for f in features]
        return {
            "input_ids": _pad(ids, self.pad_id, "left"),
            "attention_mask": _mask(ids, "left"),
            "ids": [f["id"] for f in features],
            "prompts": [f["prompt"] for f in features],
        }
