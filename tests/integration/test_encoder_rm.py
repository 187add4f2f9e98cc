"""A real pretrained encoder as reward model: MiniLM fine-tuned on real HH-RLHF pairs guides the
tiny policy through the cross-tokenizer path; predict records the scorer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration._fit_helpers import fit, metrics, run_module


def _predict_args(kit, rm, run_dir: Path, *extra: str) -> list[str]:
    return [
        "recipe=tiny_args",
        f"policy={kit['policy']}",
        f"reward_model={rm}",
        f"run_dir={run_dir}",
        "data.limit=2",
        "decode.batch_size=2",
        "decode.max_new_tokens=4",
        "decode.topk=3",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def minilm_rm(shared_data, tmp_path_factory) -> Path:
    """minilm_hh_rm cut down for CI: 8 steps of 4 real HH pairs, 64 word-pieces."""
    run = tmp_path_factory.mktemp("minilm") / "rm"
    fit(
        "recipe=minilm_hh_rm",
        f"run_dir={run}",
        f"data.path={shared_data}/hh-rlhf/*/*.jsonl.gz",
        "data.max_length=64",
        "data.max_prompt_length=32",
        "optim.batch_size=4",
        "optim.micro_batch_size=4",
        "optim.warmup_steps=0",
        "trainer.max_steps=8",
        "trainer.val_check_interval=8",
        "trainer.limit_val_batches=4",
        "num_threads=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
        timeout=600,
    )
    return run


def _exported_val_accuracy(run: Path, batches: int) -> tuple[float, int]:
    """Pairwise accuracy of the run's HF export on its first `batches` validation batches, and
    the number of pairs: the validation data rebuilt from the run's own config."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from argsfw.config.run_dir import RunDir
    from argsfw.export import _job_for
    from argsfw.modules import build_stage

    parts = build_stage(_job_for(run / "checkpoints" / "last.ckpt", None), RunDir(run))
    parts.datamodule.setup("validate")
    model = AutoModelForSequenceClassification.from_pretrained(run / "hf").eval()
    hits = []
    for _, batch in zip(range(batches), parts.datamodule.val_dataloader()):
        whole = batch["cut_fraction"] >= 1.0
        with torch.no_grad():
            r = [
                model(
                    input_ids=batch[f"{side}_input_ids"],
                    attention_mask=batch[f"{side}_attention_mask"],
                ).logits[:, 0]
                for side in ("chosen", "rejected")
            ]
        hits.append((r[0] > r[1])[whole])
    hits = torch.cat(hits)
    return hits.float().mean().item(), hits.numel()


def test_minilm_rm_trains_on_real_pairs(minilm_rm):
    m = metrics(minilm_rm)
    assert m["train/loss"] > 0
    # the logged accuracy is the exported model's on the 4 validation batches of 4 real pairs
    acc, n = _exported_val_accuracy(minilm_rm, batches=4)
    assert n == 16 and m["val/reward_acc"] == pytest.approx(acc, abs=1e-6), (m, acc)
    meta = json.loads((minilm_rm / "meta.json").read_text())
    assert meta["new_head"] == ["classifier.bias", "classifier.weight"]  # only the head is new
    config = json.loads((minilm_rm / "hf" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]


def test_minilm_rm_guides_the_tiny_policy(minilm_rm, tiny_kit, tmp_path):
    """In-process: the search equals the reference; through predict: meta.json names the scorer."""
    from argsfw.decoding import ArgsDecoder, decode_settings, reference_decode
    from argsfw.decoding.accounting import DecodeStats
    from argsfw.decoding.cross_tokenizer import cut_retokenizer
    from argsfw.models import load_policy, load_reward_model, load_tokenizer

    tok, llm = load_tokenizer(tiny_kit["policy"]), load_policy(tiny_kit["policy"])
    rm_tok, rm = load_tokenizer(minilm_rm), load_reward_model(minilm_rm)
    dec = ArgsDecoder(llm, tok, rm, rm_tok)
    assert dec.probe.scorer == "full" and not dec.shared_tokenizer
    s = decode_settings(weight=5.0, topk=4, max_new_tokens=5)
    gens, stats = dec.generate(["\n\nHuman: How do I bake bread?\n\nAssistant:"], s)
    convert = cut_retokenizer(tok, rm_tok, dec.rm_ctx, DecodeStats())
    ref, _ = reference_decode(
        llm,
        rm,
        gens[0].prompt_ids,
        weight=5.0,
        topk=4,
        max_new_tokens=5,
        eos_ids=tuple(dec.eos_ids),
        to_rm_ids=lambda ids: convert([ids])[0],
    )
    assert gens[0].new_ids == ref and stats.scorer == "full"

    from argsfw import ARGS  # the original API finds the RM's own tokenizer in its directory

    searcher = ARGS(llm_path=tiny_kit["policy"], rm_path=minilm_rm, llm_dev="cpu")
    out = searcher.generate(gens[0].prompt, weight=5.0, topk=4, max_new_token=5)
    assert out[0].tolist() == gens[0].ids and searcher.last_stats.scorer == "full"
    bon, bon_stats = dec.generate([gens[0].prompt], s, method="best-of-n", num_samples=2)
    assert isinstance(bon[0].reward, float) and bon_stats.scorer == "full"

    out = tmp_path / "pred"
    run_module("predict", *_predict_args(tiny_kit, minilm_rm, out), timeout=300)
    assert json.loads((out / "meta.json").read_text())["scorer"] == "full"
    records = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines()]
    assert records and all(r["stats"]["scorer"] == "full" for r in records)
    assert all(isinstance(r["reward"], float) for r in records)


def test_predict_records_a_forced_scorer(tiny_kit, tmp_path):
    run_module(
        "predict",
        *_predict_args(tiny_kit, tiny_kit["reward_model"], tmp_path, "decode.scorer=expanded"),
    )
    assert json.loads((tmp_path / "meta.json").read_text())["scorer"] == "expanded"


# RMs that cannot guide (two labels, no score head, a short context, an unknown scorer) are rows
# of the one bad-input table, tests/integration/test_bad_inputs.py.
