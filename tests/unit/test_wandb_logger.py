"""W&B runs: a random id kept in the run directory, the run's name, group and job type."""

from __future__ import annotations

import json

import pytest

from argsfw.callbacks.outputs import clear_outputs
from argsfw.config.compose import compose
from argsfw.config.run_dir import RunDir
from argsfw.errors import ConfigError
from argsfw.loggers import RUN_ID_FILE, build_logger, wandb_names, wandb_run_id


def _job(*overrides, recipe="tiny_sft"):
    return compose([f"recipe={recipe}", "logger.name=wandb", *overrides])


def _init(logger) -> dict:
    return logger._wandb_init  # what WandbLogger hands wandb.init (Lightning's attribute)


def test_a_new_run_gets_a_random_id_kept_in_its_run_dir(tmp_path):
    run = tmp_path / "runs" / "tiny_sft"
    first = wandb_run_id(run)
    assert (run / RUN_ID_FILE).read_text().strip() == first and len(first) == 16
    assert wandb_run_id(run) == first  # resume: the same directory, the same W&B run
    other = tmp_path / "elsewhere" / "runs" / "tiny_sft"  # same name, another run
    assert wandb_run_id(other) != first


def test_fit_overwrite_starts_a_new_wandb_run_and_resume_keeps_it(tmp_path):
    from argsfw.fit import check_run_dir

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.meta_path.write_text(json.dumps({"stage": "sft"}))
    old = wandb_run_id(run.path)
    check_run_dir(_job(f"run_dir={run.path}", "resume=true"), run)
    assert wandb_run_id(run.path) == old
    check_run_dir(_job(f"run_dir={run.path}", "overwrite=true"), run)
    assert not (run.path / RUN_ID_FILE).exists()
    assert wandb_run_id(run.path) != old


def test_predict_overwrite_clears_the_id_with_the_outputs(tmp_path):
    old = wandb_run_id(tmp_path)
    (tmp_path / "meta.json").write_text("{}")
    clear_outputs(tmp_path)
    assert (tmp_path / "meta.json").exists() and wandb_run_id(tmp_path) != old


def test_only_rank_zero_writes_the_id(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert wandb_run_id(tmp_path) and not (tmp_path / RUN_ID_FILE).exists()


def test_a_damaged_id_file_is_one_line_naming_it(tmp_path):
    (tmp_path / RUN_ID_FILE).write_text("not/an id\n")
    with pytest.raises(ConfigError, match=rf"^{tmp_path / RUN_ID_FILE} holds .* delete the file"):
        wandb_run_id(tmp_path)


def test_name_group_and_job_type_reach_the_wandb_logger(tmp_path):
    job = _job("logger.group=study1", "logger.run_name=my-sft")
    logger = build_logger(job.logger, tmp_path / "r", job.stage)
    init = _init(logger)
    assert (init["name"], init["group"], init["job_type"]) == ("my-sft", "study1", "sft")
    assert init["id"] == (tmp_path / "r" / RUN_ID_FILE).read_text().strip()
    assert init["resume"] == "allow"


@pytest.mark.parametrize(
    ("stage", "run_dir", "name"),
    [
        ("sft", "runs/tiny_sft", "tiny_sft"),
        ("sft", "runs/study/sft", "sft"),
        ("token_rm", "runs/tiny_token_rm", "tiny_token_rm"),
        ("rm", "runs/tiny_arm", "rm-tiny_arm"),
        ("predict", "runs/study/predict/greedy", "predict-greedy"),
        ("predict", "runs/x/decode.weight=1", "predict-decode.weight=1"),
    ],
)
def test_default_run_name_is_the_run_dir_with_its_stage(tmp_path, stage, run_dir, name):
    cfg = _job().logger
    assert wandb_names(cfg, tmp_path / run_dir, stage) == {
        "name": name,
        "group": None,
        "job_type": stage,
    }


def test_predict_and_evaluate_pass_their_stage_as_job_type(tmp_path, monkeypatch):
    import wandb

    from argsfw.evaluate import _wandb_run

    seen = {}
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.update(kw))
    job = _job("logger.group=g", recipe="tiny_eval")
    _wandb_run(job, RunDir(tmp_path / "evaluate"))
    assert (seen["name"], seen["group"], seen["job_type"]) == ("evaluate", "g", "evaluate")
    job = _job(recipe="tiny_args")
    logger = build_logger(job.logger, tmp_path / "p", job.stage)
    assert (_init(logger)["job_type"], _init(logger)["name"]) == ("predict", "predict-p")


def test_offline_run_records_the_id_name_group_and_job_type(tmp_path, monkeypatch):
    """Offline W&B, as a run without a key gets it: no network; resume reuses the run id."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    job = _job("logger.group=study1")
    run_dir = tmp_path / "study1" / "sft"
    ids = []
    for _ in range(2):  # the second build is a resume of the same run directory
        wb = build_logger(job.logger, run_dir, job.stage).experiment
        ids.append(wb.id)
        assert (wb.name, wb.group, wb.job_type) == ("sft", "study1", "sft")
        wandb.finish()
    assert ids[0] == ids[1] == (run_dir / RUN_ID_FILE).read_text().strip()
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert runs and all(r.name.endswith(f"-{ids[0]}") for r in runs)
