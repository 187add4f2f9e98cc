"""tiny_sft and tiny_rm end to end as subprocesses; exports load in vanilla transformers.

The export checks read the tiny pipeline's SFT and RM runs (`tiny_pipeline` in conftest.py).
"""

from __future__ import annotations

import json

import pytest
import torch
from _fit_helpers import RM_METRICS, SMALL, fit, metrics, run_here, run_module

pytestmark = pytest.mark.slow
IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46], [1, 50, 51, 52, 53, 0, 0, 0]])
MASK = (torch.arange(8) < torch.tensor([[8], [5]])).long()


def _trained_module(run_dir, recipe):
    """The trained LightningModule, rebuilt from the run's config and its last checkpoint."""
    from argsfw.config.run_dir import RunDir
    from argsfw.export import _job_for, lightning_state_dict
    from argsfw.modules import build_stage

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    parts = build_stage(_job_for(ckpt, None), RunDir(run_dir))
    parts.module.load_state_dict(lightning_state_dict(ckpt))
    return parts.module.eval()


def test_tiny_sft_exports_a_causal_lm_with_the_trained_outputs(tiny_pipeline, tmp_path):
    """On the tiny pipeline's SFT run (tiny_sft, 100 steps, CSV logger): see conftest.py."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tiny_pipeline.run_dir / "sft"
    m = metrics(run)
    assert m["trainer/global_step"] == 100 and "train/loss" in m and "val/loss" in m
    assert (run / "logs" / "metrics.csv").is_file()  # the CSV logger wrote
    assert (run / "hf" / "model.safetensors").is_file() and (run / "hf" / "meta.json").is_file()
    assert not list(run.glob(".hf.tmp*"))
    model = AutoModelForCausalLM.from_pretrained(run / "hf").eval()
    tok = AutoTokenizer.from_pretrained(run / "hf")
    assert tok.pad_token_id is not None
    with torch.no_grad():
        expected = _trained_module(run, "tiny_sft")(IDS, MASK)
        torch.testing.assert_close(model(input_ids=IDS, attention_mask=MASK).logits, expected)
    # python -m argsfw.export from the Lightning checkpoint gives the same weights
    out = tmp_path / "exported"
    run_here("export", str(run / "checkpoints" / "last.ckpt"), str(out))
    again = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=IDS, attention_mask=MASK).logits, expected)


def test_tiny_rm_exports_a_sequence_classifier_with_the_trained_outputs(tiny_pipeline):
    """On the tiny pipeline's RM run (tiny_rm, 40 steps): see conftest.py."""
    from transformers import AutoModelForSequenceClassification

    run = tiny_pipeline.run_dir / "rm"
    m = metrics(run)
    for key in RM_METRICS:
        assert key in m, key
    # the run records the pairs it trained and validated on: the validation count is the one
    # behind the accuracy's standard error (the sample se of n 0/1 verdicts: p (1 - p) / (n - 1))
    data = json.loads((run / "meta.json").read_text())["data"]
    assert data["train"]["kept"] > 0 and data["train"]["split"] == "train"
    p, se = m["val/reward_acc"], m["val/reward_acc_se"]
    if 0 < p < 1:
        assert round(p * (1 - p) / se**2) + 1 == data["validation"]["kept"], (p, se, data)
    model = AutoModelForSequenceClassification.from_pretrained(run / "hf").eval()
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    ids = IDS.masked_fill(MASK == 0, model.config.pad_token_id)
    with torch.no_grad():
        expected = _trained_module(run, "tiny_rm")(ids, MASK)
        torch.testing.assert_close(
            model(input_ids=ids, attention_mask=MASK).logits.squeeze(-1), expected
        )


def test_export_with_another_runs_config_exits_2_in_one_line(tiny_pipeline, tmp_path):
    """The RM's checkpoint with the SFT run's config names both stages; the SFT checkpoint with
    a config of another model shape names the first mismatched weight. Nothing is written."""
    from argsfw.export import STAGE_KEY

    runs = tiny_pipeline.run_dir
    rm_ckpt, sft_ckpt = (runs / s / "checkpoints" / "last.ckpt" for s in ("rm", "sft"))
    assert torch.load(rm_ckpt, weights_only=False)[STAGE_KEY] == "rm"  # fits tag checkpoints
    proc = run_module(
        "export", str(rm_ckpt), str(tmp_path / "a"), "--config", str(runs / "sft" / "config.yaml"),
        check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "is from a rm run" in lines[0] and "asks for the sft stage" in lines[0], lines[0]
    wider = tmp_path / "wider.yaml"
    text = (runs / "sft" / "config.yaml").read_text()
    assert "hidden_size: 128" in text
    wider.write_text(text.replace("hidden_size: 128", "hidden_size: 64"))
    proc = run_here(
        "export", str(sft_ckpt), str(tmp_path / "b"), "--config", str(wider), check=False
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not fit the sft model" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_run_dir_exit_2_one_line(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "meta.json").write_text("{}")
    proc = fit("recipe=tiny_sft", f"run_dir={run}", "logger.name=none", check=False, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "resume=true" in proc.stderr


def test_wandb_offline_without_key(tmp_path):
    run = tmp_path / "wb"
    fit(
        "recipe=tiny_sft",
        f"run_dir={run}",
        "trainer.max_steps=2",
        "logger.name=wandb",
        *SMALL,
        env_extra={"WANDB_MODE": None, "WANDB_API_KEY": None, "HOME": str(tmp_path), "NETRC": None},
    )
    runs = list((run / "wandb").glob("offline-run-*"))
    assert runs and any(runs[0].rglob("*.wandb"))
    run_id = (run / "wandb_run_id").read_text().strip()  # a random id kept for resume=true
    assert runs[0].name.endswith(f"-{run_id}")
