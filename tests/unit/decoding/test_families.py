"""ARGS over many architectures: tiny random decoders (policy and RM) and encoder RMs.

Each family's ARGS-greedy output equals the no-cache reference token for token, through the
scorer the probe picked; the picked scorer is pinned so a change in transformers shows here.
"""

from __future__ import annotations

import pytest
import torch

from argsfw.decoding import ArgsDecoder, DecodeInputError, decode_settings, reference_decode
from argsfw.decoding.accounting import DecodeStats
from argsfw.decoding.cross_tokenizer import cut_retokenizer
from argsfw.models.families import (
    DECODER_FAMILIES,
    ENCODER_FAMILIES,
    build_family_model,
    train_wordpiece,
)

PROMPTS = ["Hi", "\n\nHuman: What is the capital of France?\n\nAssistant:"]
# the tree mask is not what these attentions take: Bloom's ALiBi raises on a 4-D mask, MPT's
# ALiBi ignores part of it (the probe measures the error); both run on the expanded cache
NOT_TREE = {"bloom": "expanded", "mpt": "expanded"}
SETTINGS = decode_settings(weight=30.0, topk=4, max_new_tokens=4)


@pytest.fixture(scope="module")
def bpe(tiny_texts):
    from argsfw.models import train_tokenizer

    return train_tokenizer(tiny_texts, vocab_size=300)


def _boost(rm, factor: float = 30.0):
    """Random tiny heads give rewards ~0.01; scale the head so the reward really steers the search."""
    head = getattr(rm, "score", None) or rm.classifier
    with torch.no_grad():
        for p in head.parameters():
            p.mul_(factor)
    return rm


def _check(dec, llm, rm, to_rm_ids=None):
    gens, stats = dec.generate(PROMPTS, SETTINGS)
    assert stats.scorer == dec.probe.scorer
    for g in gens:
        ref, finished = reference_decode(
            llm,
            rm,
            g.prompt_ids,
            weight=SETTINGS.weight,
            topk=SETTINGS.topk,
            max_new_tokens=SETTINGS.max_new_tokens,
            eos_ids=tuple(dec.eos_ids),
            to_rm_ids=to_rm_ids,
        )
        assert g.new_ids == ref and g.finished == finished


@pytest.mark.parametrize("family", list(DECODER_FAMILIES))
def test_decoder_family_equals_reference(family, bpe):
    llm = build_family_model(family, bpe, seed=0)
    rm = _boost(build_family_model(family, bpe, reward=True, seed=1))
    dec = ArgsDecoder(llm, bpe, rm)
    assert dec.probe.scorer == NOT_TREE.get(family, "tree"), dec.probe.summary()
    _check(dec, llm, rm)


@pytest.mark.parametrize("family", list(ENCODER_FAMILIES))
def test_encoder_rm_family_equals_reference(family, llama, tiny_texts):
    """An encoder RM over its own WordPiece vocabulary guides the Llama policy (cross-tokenizer, full scorer)."""
    wordpiece = train_wordpiece(tiny_texts, ENCODER_FAMILIES[family][2])
    rm = _boost(build_family_model(family, wordpiece, reward=True, seed=1))
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm, wordpiece)
    assert not dec.shared_tokenizer and dec.probe.scorer == "full"
    convert = cut_retokenizer(llama.tokenizer, wordpiece, dec.rm_ctx, DecodeStats())
    _check(dec, llama.llm, rm, lambda ids: convert([ids])[0])


def test_encoder_rm_cannot_be_forced_onto_a_cache(llama, tiny_texts):
    wordpiece = train_wordpiece(tiny_texts, 260)
    rm = build_family_model("bert", wordpiece, reward=True)
    dec = ArgsDecoder(llama.llm, llama.tokenizer, rm, wordpiece)
    for forced in ("tree", "expanded"):
        with pytest.raises(DecodeInputError, match="BertForSequenceClassification.*scorer=full"):
            dec.generate(["hi"], decode_settings(scorer=forced, max_new_tokens=2))


def test_a_family_that_cannot_work_is_named(llama):
    """An RM whose forward fails on any input: one line naming its class, before decoding."""

    class BrokenForSequenceClassification(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = config
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, input_ids=None, **kw):
            raise NotImplementedError("no kernel for this attention")

    from transformers import BertConfig

    with pytest.raises(DecodeInputError) as err:
        ArgsDecoder(
            llama.llm, llama.tokenizer, BrokenForSequenceClassification(BertConfig(num_labels=1))
        )
    msg = str(err.value)
    assert "\n" not in msg and "BrokenForSequenceClassification cannot score" in msg
