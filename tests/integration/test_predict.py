"""`python -m argsfw.predict` end to end on tiny models, single process (run in-process).

Multi-process and killed-process runs are in test_predict_ddp.py (as subprocesses).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from argsfw.predict import main

FIELDS = {
    "id",
    "prompt",
    "result",
    "response",
    "method",
    "settings",
    "mode",
    "n_prompt_tokens",
    "n_new_tokens",
    "seconds",
    "stats",
    "finished",
    "reward",
    "policy",
}


def _args(kit, run_dir: Path, *extra: str) -> list[str]:
    return [
        "recipe=tiny_args",
        f"policy={kit['policy']}",
        f"reward_model={kit['reward_model']}",
        f"run_dir={run_dir}",
        "data.limit=4",
        "decode.batch_size=2",
        "decode.max_new_tokens=6",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _one_error_line(capsys) -> str:
    err = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("argsfw predict: error")
    ]
    assert len(err) == 1, err
    return err[0]


def test_predict_writes_records_reruns_as_noop_and_refuses_other_settings(
    tiny_kit, tmp_path, capsys, caplog
):
    caplog.set_level(logging.INFO, logger="argsfw")
    run = tmp_path / "run"
    assert main(_args(tiny_kit, run, "predict.legacy_json=true", "logger=wandb")) == 0
    recs = _records(run / "outputs.jsonl")
    assert [r["id"] for r in recs] == [f"tiny-test-{i:05d}" for i in range(4)]
    for r in recs:
        assert set(r) >= FIELDS
        assert r["response"] == r["prompt"] + r["result"] and 1 <= r["n_new_tokens"] <= 6
        assert (r["method"], r["mode"], r["settings"]) == (
            "args-greedy",
            "greedy",
            {"weight": 1.5, "topk": 10},
        )
        assert r["stats"]["rm_forwards"] > 0 and r["stats"]["peak_memory_bytes"] > 0
    assert (run / "DONE").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert (
        meta["status"] == "completed"
        and meta["predict"]["written"] == 4
        and meta["predict"]["missing"] == 0
    )
    summary, tokens = meta["predict"], sum(r["n_new_tokens"] for r in recs)
    for m in ("llm", "rm"):  # FLOPs and re-reads of the whole output, per generated token
        flops = sum(r["stats"][f"{m}_flops"] for r in recs)
        assert flops > 0 and summary[f"{m}_flops_per_token"] == pytest.approx(flops / tokens)
        assert summary[f"{m}_reread_fraction"] == 0.0  # ARGS-greedy reads every token once
    assert summary["flops_per_token"] == pytest.approx(
        summary["llm_flops_per_token"] + summary["rm_flops_per_token"]
    )
    legacy = json.loads((run / "outputs_original.json").read_text())
    assert legacy[0] == {
        "prompt": recs[0]["prompt"],
        "response": recs[0]["response"],
        "method": "args-greedy w=1.5 k=10",
    }

    before = (run / "outputs.jsonl").stat().st_mtime_ns
    assert (
        main(_args(tiny_kit, run, "decode.batch_size=3")) == 0
    )  # batch size does not change outputs
    assert (run / "outputs.jsonl").stat().st_mtime_ns == before
    assert "nothing to do" in caplog.text

    assert main(_args(tiny_kit, run, "decode.weight=0.5")) == 2
    line = _one_error_line(capsys)
    assert "decode.weight: 1.5 -> 0.5" in line and "overwrite=true" in line and "run_dir=" in line


def test_bad_inputs_exit_2_with_one_line(tiny_kit, tmp_path, capsys):
    assert main(_args(tiny_kit, tmp_path / "a", f"policy={tmp_path / 'runs' / 'tiny_sft'}")) == 2
    line = _one_error_line(capsys)
    assert "does not exist" in line and "python -m argsfw.fit recipe=tiny_sft" in line
    assert main(_args(tiny_kit, tmp_path / "b", "reward_model=null")) == 2
    assert "python -m argsfw.fit recipe=tiny_rm" in _one_error_line(capsys)
    assert (
        main(_args(tiny_kit, tmp_path / "c", "decode.weight=0", "reward_model=null")) == 0
    )  # greedy needs no RM
    bad = tmp_path / "bad.config"
    bad.write_text('{rm_weight": 1.0, "topk": 10, "mode": "greedy", "sample_temp": null}\n')
    assert main(_args(tiny_kit, tmp_path / "d", f"decode.config_file={bad}")) == 2
    assert "bad.config:1: not valid JSON" in _one_error_line(capsys)


@pytest.fixture(scope="module")
def other_tokenizer_rm(tmp_path_factory, tiny_texts) -> Path:
    """A tiny RM whose BPE tokenizer differs from the tiny_kit policy's."""
    from argsfw.models import make_tiny_kit

    return make_tiny_kit(tmp_path_factory.mktemp("other_kit"), tiny_texts, vocab_size=300, seed=1)[
        "reward_model"
    ]


def test_tokenizer_mismatch_strict_errors_else_cross_tokenizer(
    tiny_kit, other_tokenizer_rm, tmp_path, capsys, caplog
):
    args = _args(
        tiny_kit,
        tmp_path / "x",
        f"reward_model={other_tokenizer_rm}",
        "data.limit=2",
        "decode.max_new_tokens=3",
    )
    assert main([*args, "predict.strict_tokenizer=true"]) == 2
    assert "tokenizers differ" in _one_error_line(capsys)
    assert main(args) == 0
    assert "cross-tokenizer scorer" in caplog.text
    assert len(_records(tmp_path / "x" / "outputs.jsonl")) == 2


def test_config_file_and_multirun_write_one_output_per_setting(tiny_kit, tmp_path):
    cfg = tmp_path / "example.config"
    cfg.write_text(
        '{"rm_weight": 0.0, "topk": 5, "mode": "greedy", "sample_temp": null}\n'
        '{"rm_weight": 1.0, "topk": 3, "mode": "topk", "sample_temp": 0.9}\n'
    )
    assert main(_args(tiny_kit, tmp_path / "cf", f"decode.config_file={cfg}", "data.limit=2")) == 0
    got = [_records(tmp_path / "cf" / f"config_{i}" / "outputs.jsonl") for i in range(2)]
    assert [(r[0]["settings"], r[0]["mode"]) for r in got] == [
        ({"weight": 0.0, "topk": 5}, "greedy"),
        ({"temperature": 0.9, "weight": 1.0, "topk": 3}, "topk"),
    ]
    assert all((tmp_path / "cf" / f"config_{i}" / "DONE").is_file() for i in range(2))

    assert main(["-m", *_args(tiny_kit, tmp_path / "sw", "data.limit=2"), "decode.weight=0,1"]) == 0
    dirs = sorted(p.parent.name for p in (tmp_path / "sw").glob("*/DONE"))
    assert dirs == ["decode.weight=0", "decode.weight=1"]
    assert _records(tmp_path / "sw" / "decode.weight=1" / "outputs.jsonl")[0]["settings"] == {
        "weight": 1.0,
        "topk": 10,
    }


def test_prompts_over_the_context_are_skipped_or_truncated(tiny_kit, tmp_path):
    data = tmp_path / "prompts.jsonl"
    long = "\n\nHuman: " + "tell me about spiders and legs " * 200 + "\n\nAssistant:"
    rows = [
        {"id": "a", "prompt": "\n\nHuman: Tell me a joke.\n\nAssistant:"},
        {"id": "b", "prompt": long},
        {"id": "c", "prompt": "\n\nHuman: What is two plus two?\n\nAssistant:"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["data.source=json", f"data.path={data}", "data.limit=null", "decode.max_new_tokens=3"]
    assert main(_args(tiny_kit, tmp_path / "skip", *common)) == 0
    assert [r["id"] for r in _records(tmp_path / "skip" / "outputs.jsonl")] == ["a", "c"]
    assert [r["id"] for r in _records(tmp_path / "skip" / "skipped.jsonl")] == ["b"]
    meta = json.loads((tmp_path / "skip" / "meta.json").read_text())
    assert meta["predict"]["skipped"] == {"too_long": 1} and meta["status"] == "completed"

    assert main(_args(tiny_kit, tmp_path / "trunc", *common, "predict.too_long=truncate")) == 0
    recs = {r["id"]: r for r in _records(tmp_path / "trunc" / "outputs.jsonl")}
    assert (
        sorted(recs) == ["a", "b", "c"]
        and recs["b"]["prompt_truncated"]
        and not recs["a"]["prompt_truncated"]
    )
    assert recs["b"]["n_prompt_tokens"] + 3 <= 512
    assert json.loads((tmp_path / "trunc" / "meta.json").read_text())["predict"]["truncated"] == 1
