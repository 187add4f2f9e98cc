"""Collators and DataModules with a tiny BPE tokenizer: masking, padding, truncation, loaders."""

from __future__ import annotations

import pytest
import torch

from argsfw.data import (
    IGNORE_INDEX,
    DataConfig,
    PreferencePair,
    PromptCollator,
    PromptDataModule,
    PromptRecord,
    RMCollator,
    RMDataModule,
    SFTCollator,
    SFTDataModule,
    tokenize_prompts,
    tokenize_rm,
    tokenize_sft,
)

PAIRS = [
    PreferencePair(
        "\n\nHuman: What is two plus two?\n\nAssistant:", " Two plus two is four.", " No.", "a"
    ),
    PreferencePair(
        "\n\nHuman: Tell me a joke.\n\nAssistant:",
        " Why did the chicken cross?",
        " Go away please.",
        "b",
    ),
]


@pytest.fixture(scope="module")
def tok(tiny_kit):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_kit["policy"])


def test_sft_masks_prompt_appends_eos_and_right_pads(tok):
    items, counts = tokenize_sft(tok, PAIRS, max_length=64, max_prompt_length=32)
    prompt_ids = tok(PAIRS[0].prompt)["input_ids"]
    reply_ids = tok(PAIRS[0].chosen, add_special_tokens=False)["input_ids"]
    assert items[0]["input_ids"] == prompt_ids + reply_ids + [tok.eos_token_id]
    assert items[0]["labels"] == [IGNORE_INDEX] * len(prompt_ids) + reply_ids + [tok.eos_token_id]
    assert counts.as_dict() == {"prompts": 0, "responses": 0, "dropped": 0}
    batch = SFTCollator(tok)(items)
    lens = [len(i["input_ids"]) for i in items]
    assert batch["input_ids"].shape == (2, max(lens))
    short = lens.index(min(lens))
    assert batch["attention_mask"][short].tolist() == [1] * min(lens) + [0] * (
        max(lens) - min(lens)
    )
    assert (batch["input_ids"][short, min(lens) :] == tok.pad_token_id).all()
    assert (batch["labels"][short, min(lens) :] == IGNORE_INDEX).all()


def test_sft_both_targets_loss_on_prompt_and_truncation(tok):
    both, _ = tokenize_sft(tok, PAIRS, 64, 32, target="both", loss_on_prompt=True)
    assert len(both) == 4 and both[0]["labels"] == both[0]["input_ids"]
    items, counts = tokenize_sft(tok, PAIRS, max_length=12, max_prompt_length=8)
    assert all(len(i["input_ids"]) <= 12 for i in items)
    assert items[0]["input_ids"][0] == tok.bos_token_id  # left truncation keeps the BOS
    assert counts.prompts == 2 and counts.responses >= 1
    with pytest.raises(ValueError, match="unknown SFT target"):
        tokenize_sft(tok, PAIRS, 64, 32, target="rejected")


def test_rm_collator_pads_to_common_length_and_cuts_prefixes(tok):
    items, _ = tokenize_rm(tok, PAIRS, 64, 32)
    assert items[0]["chosen"][-1] != tok.eos_token_id  # no EOS: the RM scores partial text too
    batch = RMCollator(tok)(items)
    assert batch["chosen_input_ids"].shape == batch["rejected_input_ids"].shape
    assert batch["chosen_attention_mask"].sum(1).tolist() == [len(i["chosen"]) for i in items]
    assert batch["rejected_attention_mask"].sum(1).tolist() == [len(i["rejected"]) for i in items]
    cut = RMCollator(tok, prefix_cuts=2)(items)
    assert cut["chosen_input_ids"].shape[0] == 6
    assert cut["cut_fraction"].tolist() == pytest.approx([1, 1, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert cut["pair_index"].tolist() == [0, 1, 0, 1, 0, 1]
    p0, n0 = items[0]["prompt_len"], len(items[0]["chosen"]) - items[0]["prompt_len"]
    assert int(cut["chosen_attention_mask"][2].sum()) == p0 + max(1, round(n0 / 3))
    row = cut["chosen_input_ids"][4][: p0 + round(2 * n0 / 3)].tolist()
    assert row == items[0]["chosen"][: len(row)]  # a prefix is the start of the whole sequence


def test_prompt_collator_left_pads_and_carries_ids(tok):
    records = [
        PromptRecord("x", "\n\nHuman: Hi\n\nAssistant:"),
        PromptRecord("y", PAIRS[1].prompt * 3),
    ]
    items, counts = tokenize_prompts(tok, records, max_prompt_length=16)
    assert counts.prompts == 1 and len(items[1]["input_ids"]) == 16
    assert items[1]["input_ids"][-3:] == tok(PAIRS[1].prompt)["input_ids"][-3:]  # the end survives
    batch = PromptCollator(tok)(items)
    n0 = len(items[0]["input_ids"])
    assert batch["attention_mask"][0].tolist() == [0] * (16 - n0) + [1] * n0
    assert batch["input_ids"][0, -n0:].tolist() == items[0]["input_ids"]
    assert batch["ids"] == ["x", "y"] and batch["prompts"][0] == records[0].prompt


def test_datamodules_on_tiny_corpus(tok):
    cfg = DataConfig(
        source="tiny", eval_split="validation", limit=40, max_length=64, max_prompt_length=48
    )
    sft = SFTDataModule(tok, cfg, batch_size=8, target="both")
    sft.setup("fit")
    batch = next(iter(sft.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8 and batch["labels"].shape == batch["input_ids"].shape
    assert len(sft.datasets["train"]) == 80 and sft.summary()["train"]["kept"] == 40
    first = [next(iter(sft.train_dataloader()))["input_ids"] for _ in range(2)]
    assert torch.equal(first[0], first[1])  # seeded shuffling

    rm = RMDataModule(tok, cfg, batch_size=4, prefix_cuts=1)
    rm.setup("fit")
    assert next(iter(rm.train_dataloader()))["chosen_input_ids"].shape[0] == 8
    assert next(iter(rm.val_dataloader()))["chosen_input_ids"].shape[0] == 4  # whole pairs only

    pm = PromptDataModule(tok, cfg, batch_size=16, skip_ids={"tiny-validation-00000"})
    pm.setup("predict")
    ids = [i for b in pm.predict_dataloader() for i in b["ids"]]
    assert len(ids) == 39 and "tiny-validation-00000" not in ids
    assert pm.stats["validation"].flagged == {"already_done": 1}


def test_datamodule_val_fraction_uses_carved_split(tok):
    cfg = DataConfig(source="tiny", val_fraction=0.1, limit=None, max_length=64)
    dm = RMDataModule(tok, cfg, batch_size=32)
    assert dm.val_split == "validation"
    dm.setup("fit")
    train, val = dm.stats["train"].kept, dm.stats["validation"].kept
    assert train + val == 4000 and 300 < val < 500
