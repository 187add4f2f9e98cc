"""The special tokens a tokenizer wraps one text in, and left truncation that keeps them."""

from __future__ import annotations


def special_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens `tokenizer` puts before and after one text: ``([BOS], [])`` for Llama, ``([CLS], [SEP])`` for BERT."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    return list(full[: len(full) - len(plain)]), []


def cut_left(ids: list[int], max_len: int, wrap: tuple[list[int], list[int]]) -> list[int]:
    """Keep the last tokens of ``ids`` (a text encoded with its ``wrap`` special tokens) so at most `max_len` remain, specials kept."""
    if len(ids) <= max_len:
        return ids
    pre, post = wrap
    body = ids[len(pre) : len(ids) - len(post)]
    keep = max(0, max_len - len(pre) - len(post))
    return pre + (body[len(body) - keep :] if keep else []) + post
