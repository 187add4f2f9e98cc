"""The pipeline's plan: step order, run-dir substitution, resume of unfinished fits."""

from __future__ import annotations

import json

import pytest

from argsfw.config.compose import compose
from argsfw.errors import ConfigError
from argsfw.pipeline import fit_complete, plan


def _arg(step, key):
    return next(a.split("=", 1)[1] for a in step.args if a.startswith(key + "="))


def test_tiny_pipeline_plan_chains_run_dirs(tmp_path):
    steps = plan(compose(["recipe=tiny_pipeline"]), tmp_path)
    names = [s.name for s in steps]
    assert names[:3] == ["sft", "rm", "ppo"] and names[-1] == "evaluate"
    assert {"predict greedy", "predict args_greedy", "predict ppo_greedy"} <= set(names)
    ppo = steps[2]
    assert _arg(ppo, "policy") == str(tmp_path / "sft") and _arg(ppo, "reward_model") == str(
        tmp_path / "rm"
    )
    by_name = {s.name: s for s in steps}
    assert _arg(by_name["predict ppo_greedy"], "policy") == str(tmp_path / "ppo")
    assert _arg(by_name["predict greedy"], "policy") == str(tmp_path / "sft")
    assert "-m" in by_name["predict args_greedy"].args
    assert _arg(by_name["evaluate"], "outputs") == f"[{tmp_path / 'predict'}]"
    assert all(s.args.count(a) == 1 for s in steps for a in s.args)


def test_predict_inputs_come_from_what_fit_steps_make(tmp_path):
    """Whatever the fit steps are called, the first that makes a policy (Stage.makes) gives
    predict its policy and the first that makes a sequence RM gives predict and evaluate theirs."""
    job = compose(["recipe=tiny_pipeline"])
    job.pipeline.fit = {"base": "tiny_sft", "guide": "tiny_rm", "judge": "tiny_rm",
                        "dpo": "tiny_dpo policy=@base"}  # fmt: skip
    job.pipeline.predict = {"g": "decode=greedy"}
    steps = {s.name: s for s in plan(job, tmp_path)}
    assert _arg(steps["predict g"], "policy") == str(tmp_path / "base")
    assert _arg(steps["predict g"], "reward_model") == str(tmp_path / "guide")
    assert _arg(steps["evaluate"], "reward_model") == str(tmp_path / "guide")
    # a training-time baseline's policy (DPO, PPO) listed first is not every row's policy
    job.pipeline.fit = {"dpo": "tiny_dpo", "base": "tiny_sft", "guide": "tiny_rm"}
    steps = {s.name: s for s in plan(job, tmp_path)}
    assert _arg(steps["predict g"], "policy") == str(tmp_path / "base")
    job.pipeline.fit = {"dpo": "tiny_dpo", "ppo": "tiny_ppo", "guide": "tiny_rm"}
    steps = {s.name: s for s in plan(job, tmp_path)}
    assert not any(a.startswith("policy=") for a in steps["predict g"].args)  # the recipe's own


def test_unfinished_fit_is_resumed_and_finished_one_recognised(tmp_path):
    (tmp_path / "sft").mkdir()
    steps = plan(compose(["recipe=tiny_pipeline"]), tmp_path)
    assert "resume=true" in steps[0].args and "resume=true" not in steps[1].args
    (tmp_path / "sft" / "hf").mkdir()
    (tmp_path / "sft" / "hf" / "config.json").write_text("{}")
    (tmp_path / "sft" / "meta.json").write_text(json.dumps({"status": "completed"}))
    assert fit_complete(tmp_path / "sft")


def test_a_new_fit_stage_and_method_plug_in_by_config(tmp_path):
    """One more fit step and one more predict step, by overrides only: order kept, @name resolved."""
    steps = plan(
        compose(
            [
                "recipe=tiny_pipeline",
                "+pipeline.fit.rm_token='tiny_rm policy=@sft'",
                "+pipeline.predict.token='recipe=tiny_args reward_model=@rm_token decode.weight=2'",
            ]
        ),
        tmp_path,
    )
    fits = [s for s in steps if s.entry == "fit"]
    assert [s.name for s in fits][:3] == ["sft", "rm", "ppo"] and fits[-1].name == "rm_token"
    new_fit = fits[-1]
    assert _arg(new_fit, "recipe") == "tiny_rm" and _arg(new_fit, "policy") == str(tmp_path / "sft")
    assert _arg(new_fit, "run_dir") == str(tmp_path / "rm_token")
    token = next(s for s in steps if s.name == "predict token")
    assert _arg(token, "reward_model") == str(tmp_path / "rm_token")  # "@rm" did not eat it
    assert _arg(token, "run_dir") == str(tmp_path / "predict" / "token")


@pytest.mark.parametrize(
    "override, message",
    [
        ("+pipeline.predict.x='decode=greedy policy=@sftt'", "step 'predict x' refers to @sftt"),
        ("pipeline.fit.ppo='tiny_ppo policy=@nope/hf'", "step 'ppo' refers to @nope"),
        ('pipeline.fit.ppo="tiny_ppo policy=\'@sft"', "step 'ppo': cannot split"),
        ("pipeline.predict.greedy='decode=greedy \"x'", "step 'predict greedy': cannot split"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_naming_the_step(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        plan(compose(["recipe=tiny_pipeline", override]), tmp_path)


def test_evaluate_without_predict_steps_is_refused(tmp_path):
    job = compose(["recipe=tiny_pipeline"])
    job.pipeline.predict = {}
    with pytest.raises(ConfigError, match="step 'evaluate' .* has nothing to evaluate"):
        plan(job, tmp_path)
    job.pipeline.evaluate_overrides = ["outputs=[runs/a]"]  # its own outputs: fine
    plan(job, tmp_path)


def _composed(step):
    from argsfw.cli import normalise_list_overrides

    return compose(normalise_list_overrides([a for a in step.args if a != "-m"]))


def test_every_step_logs_to_the_pipelines_wandb_group(tmp_path):
    root = tmp_path / "study_2024"
    steps = plan(compose(["recipe=tiny_pipeline"]), root)
    assert {_arg(s, "logger.group") for s in steps} == {"'study_2024'"}
    for step in (steps[0], steps[-1]):  # a fit step and evaluate compose with it
        assert _composed(step).logger.group == "study_2024"


def test_a_group_the_user_sets_wins(tmp_path):
    steps = plan(
        compose(
            [
                "recipe=tiny_pipeline",
                "logger.group=mine",  # the pipeline's own: every step
                "pipeline.fit_overrides=['logger.group=fits']",  # the fit steps': theirs
            ]
        ),
        tmp_path,
    )
    groups = {s.name: _composed(s).logger.group for s in steps if "-m" not in s.args}
    assert groups["sft"] == groups["rm"] == "fits" and groups["evaluate"] == "mine"
    assert all(s.args.count(a) == 1 for s in steps for a in s.args)
