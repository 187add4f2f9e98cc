"""The real-model path at micro scale on the real SmolLM2-135M-Instruct weights.

Conversion of the packaged GGUF file into a plain HF directory (logits equal the GGUF
model's), chat-template prompts from real HH-RLHF, a few RM steps with frozen bottom layers
and cached activations, and ARGS decoding equal to the reference that scores with the RM's
own Hugging Face forward (pad == eos == <|im_end|>). The package is a dependency that
`make setup` installs: if it is missing these tests fail, they do not skip.
"""

from __future__ import annotations

import json

import pytest
import torch
from _fit_helpers import fit

from argsfw.models.packaged import gguf_file, load_gguf, packaged_model_path

NAME = "smollm2-135m-instruct"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol_dir() -> str:
    """The converted directory (converted on first use into the argsfw cache, then reused)."""
    return packaged_model_path(NAME)


@pytest.fixture(scope="module")
def smol(smol_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_dir)
    return AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval(), tok


def test_converted_model_equals_the_gguf_model(smol):
    model, tok = smol
    ref, ref_tok = load_gguf(gguf_file(NAME))
    text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, return_tensors="pt").input_ids
    assert ids.tolist() == ref_tok(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, ref(input_ids=ids).logits)
    assert tok.pad_token_id == tok.eos_token_id == 2  # the shape the reward readout must handle
    assert tok.chat_template and tok.model_max_length == 8192


def test_chat_prompts_from_real_hh(smol, shared_data):
    from argsfw.data.config import DataConfig
    from argsfw.data.loading import load_pairs, load_prompts

    _, tok = smol
    cfg = DataConfig(
        source="hh_rlhf",
        path=str(shared_data / "hh-rlhf/harmless-base/test.jsonl.gz"),
        split="test",
        prompt_format="chat",
        limit=5,
    )
    raw = load_pairs(DataConfig(**{**cfg.__dict__, "prompt_format": "raw"}), "test")
    pairs = load_pairs(cfg, "test", tok)
    prompts = load_prompts(cfg, "test", tok)
    assert [p.id for p in pairs] == [p.id for p in raw]
    for p, r, q in zip(pairs, raw, prompts):
        assert p.prompt.endswith("<|im_start|>assistant\n") and "Human:" not in p.prompt
        assert p.prompt.count("<|im_start|>user") == r.prompt.count("Human:")
        assert p.chosen == r.chosen.strip() and q.prompt == p.prompt
    with pytest.raises(ValueError, match="chat template"):
        load_prompts(cfg, "test", None)


def test_rm_steps_with_frozen_layers_then_args_equals_the_hf_reference(
    smol, smol_dir, shared_data, tmp_path
):
    """Two RM steps on real pairs (top 2 layers + head, cached bottom), then ARGS with it."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    run = tmp_path / "rm"
    fit(
        "recipe=smollm_hh_rm",
        f"run_dir={run}",
        f"data.path={shared_data}/hh-rlhf/*/*.jsonl.gz",
        "data.max_length=48",
        "data.max_prompt_length=32",
        "data.limit=8",
        "model.train_top_layers=2",
        "optim.batch_size=4",
        "optim.micro_batch_size=4",
        "optim.warmup_steps=0",
        "trainer.max_epochs=1",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        timeout=600,
    )
    meta = json.loads((run / "meta.json").read_text())
    assert meta["reward_kind"] == "sequence"
    metrics = json.loads((run / "metrics.json").read_text())
    assert "train/loss" in metrics and "val/reward_acc" in metrics
    # the frozen bottom is bit-for-bit the base model's; a top layer moved
    base = load_file(f"{smol_dir}/model.safetensors")
    got = load_file(str(run / "hf" / "model.safetensors"))
    assert torch.equal(
        got["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"]
    )
    assert torch.equal(got["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    assert not torch.equal(
        got["model.layers.29.mlp.up_proj.weight"], base["model.layers.29.mlp.up_proj.weight"]
    )

    from argsfw.decoding import ArgsDecoder, decode_settings, reference_decode

    llm, tok = smol
    rm = AutoModelForSequenceClassification.from_pretrained(run / "hf", dtype=torch.float32).eval()
    assert rm.config.pad_token_id == tok.eos_token_id
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
        )
        for q in ("Answer with one word, yes or no: is the sky blue?", "Say hi.")
    ]
    s = decode_settings(method="args-greedy", weight=1.5, topk=10, max_new_tokens=6)
    dec = ArgsDecoder(llm, tok, rm)
    gens, stats = dec.generate(prompts, s, batch_size=2)
    assert stats.scorer == "tree"  # the probe verified the fast scorer against the HF forward
    for g in gens:
        ref, finished = reference_decode(
            llm, rm, g.prompt_ids, weight=s.weight, topk=s.topk,
            max_new_tokens=s.max_new_tokens, eos_ids=tuple(dec.eos_ids),
        )  # fmt: skip
        assert g.new_ids == ref and g.finished == finished
    assert any(g.finished for g in gens)  # a short answer: EOS (== pad) was a candidate and won

    # the original ARGS API takes the packaged name and the RM run like any model path
    from argsfw import ARGS

    api = ARGS(llm_path=f"packaged:{NAME}", rm_path=str(run), torch_dtype="fp32")
    out = api.generate(prompts[1], weight=1.5, topk=10, max_new_token=6, method="greedy")
    assert out[0, : len(gens[1].prompt_ids)].tolist() == gens[1].prompt_ids
    assert out[0, len(gens[1].prompt_ids) :].tolist() == gens[1].new_ids
