"""Encoder reward models in training and evaluation: [CLS] text [SEP], as the decoder path reads them."""

from __future__ import annotations

import pytest
import torch

from argsfw.data import RMCollator, tokenize_rm
from argsfw.data.types import PreferencePair
from argsfw.models.families import build_family_model, train_wordpiece

PAIRS = [
    PreferencePair(
        prompt="\n\nHuman: What is the capital of France?\n\nAssistant:",
        chosen=" The capital of France is Paris.",
        rejected=" I do not know.",
        id="p0",
    )
]


@pytest.fixture(scope="module")
def wordpiece(tiny_texts):
    return train_wordpiece(tiny_texts, 260)


def test_rm_pairs_close_with_the_encoders_sep(wordpiece):
    items, _ = tokenize_rm(wordpiece, PAIRS, 64, 32)
    item = items[0]
    # what the decoding side scores: rm_tokenizer(prompt + response) with its own special tokens
    assert item["chosen"] == wordpiece(PAIRS[0].prompt + PAIRS[0].chosen).input_ids
    assert item["rejected"] == wordpiece(PAIRS[0].prompt + PAIRS[0].rejected).input_ids
    assert item["suffix_len"] == 1
    batch = RMCollator(wordpiece, prefix_cuts=2)(items)
    sep, pad = wordpiece.sep_token_id, wordpiece.pad_token_id
    for row, mask in zip(batch["chosen_input_ids"], batch["chosen_attention_mask"]):
        real = row[mask.bool()].tolist()
        assert real[0] == wordpiece.cls_token_id and real[-1] == sep and real.count(sep) == 1
        assert item["prompt_len"] < len(real) <= len(item["chosen"])
    assert (batch["chosen_input_ids"][:, 0] != pad).all()


def test_rm_pairs_truncate_inside_the_specials(wordpiece):
    items, counts = tokenize_rm(wordpiece, PAIRS, 12, 8)
    for key in ("chosen", "rejected"):
        ids = items[0][key]
        assert (
            len(ids) <= 12
            and ids[0] == wordpiece.cls_token_id
            and ids[-1] == wordpiece.sep_token_id
        )
    assert counts.prompts == 1 and counts.responses >= 1


def test_evaluate_reward_cuts_encoder_texts_from_the_left(wordpiece):
    from argsfw.eval.reward import score_texts
    from argsfw.models import cut_left, special_wrap

    rm = build_family_model("bert", wordpiece, reward=True, seed=0)
    rm.config.max_position_embeddings = 10
    texts = ["hello", PAIRS[0].prompt + PAIRS[0].chosen]
    res = score_texts(texts, rm, wordpiece, batch_size=2)
    assert res.n_truncated == 1 and res.n_scored == 2
    cut = cut_left(wordpiece(texts[1]).input_ids, 10, special_wrap(wordpiece))
    assert len(cut) == 10 and cut[-1] == wordpiece.sep_token_id
    with torch.no_grad():
        want = float(rm(input_ids=torch.tensor([cut])).logits[0, 0])
    assert res.scores[1] == pytest.approx(want, abs=1e-5)
