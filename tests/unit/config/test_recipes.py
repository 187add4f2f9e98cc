"""Every shipped recipe composes, validates and (for big models) builds on the meta device."""

from __future__ import annotations

import shlex

import pytest

from argsfw.config.compose import (
    RECIPE_DIR,
    RECIPE_PATH_ENV,
    available_recipes,
    compose,
    expand_sweep,
    recipe_files,
)
from argsfw.config.schema import JobConfig
from argsfw.errors import ConfigError
from argsfw.models.known import KNOWN_ARCHITECTURES, build_on_meta
from argsfw.stages import stages

RECIPES = available_recipes()
ENTRY = {name: s.entry for name, s in stages().items()}
REQUIRED = {
    "opt125m_sft",
    "opt350m_rm",
    "opt1.3b_sft",
    "opt1.3b_rm",
    "opt1.3b_ppo",
    "opt2.7b_sft",
    "llama7b_sft",
    "llama7b_rm",
    "llama7b_args",
    "opt1.3b_args",
    "tiny_sft",
    "tiny_rm",
    "tiny_ppo",
    "tiny_args",
    "tiny_arm",
    "tiny_token_rm",
    "tiny_token_rm_distill",
    "llama7b_arm",
    "opt1.3b_token_rm",
    "tiny_genarm",
    "tiny_token_rm_args",
    "llama7b_genarm",
}
# Published parameter counts of the causal LMs the recipes name.
PARAMS = {
    "facebook/opt-125m": 125_239_296,
    "facebook/opt-350m": 331_196_416,
    "facebook/opt-1.3b": 1_315_758_080,
    "facebook/opt-2.7b": 2_651_596_800,
    "huggyllama/llama-7b": 6_738_415_616,
    "argsearch/llama-7b-sft-float32": 6_738_415_616,
}


def test_required_recipes_exist():
    assert set(RECIPES) >= REQUIRED, REQUIRED - set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_and_validates(name):
    job = compose([f"recipe={name}"])
    assert isinstance(job, JobConfig) and job.recipe == name and job.stage in ENTRY
    path = recipe_files()[name]
    assert path.parent == RECIPE_DIR, "shipped recipes live in the top-level recipes/ folder"
    header = path.read_text().splitlines()
    assert header[0] == "# @package _global_"
    command = next(line for line in header if line.startswith("# Command:"))
    assert f"python -m argsfw.{ENTRY[job.stage]} recipe={name}" in command
    # The command as a shell would split it must compose too (quoting of list overrides).
    words = shlex.split(command.removeprefix("# Command:").split("(", 1)[0])
    args = words[words.index(f"argsfw.{ENTRY[job.stage]}") + 1 :]
    runs = expand_sweep([a for a in args if a not in ("-m", "--multirun")])
    assert compose(list(runs[0])).recipe == name
    assert any(line.startswith("# Needs:") for line in header), (
        "recipes say what hardware and time they need"
    )


def _model_to_check(name):
    """(hub spec, is_reward) of the big model a recipe builds, or None for tiny/generic ones."""
    job = compose([f"recipe={name}"])
    if job.stage == "evaluate":
        return (job.reward_model, True) if job.reward_model else None
    if job.stage == "pipeline" or name.startswith("tiny"):
        return None
    # The model itself when the recipe names a hub checkpoint, else the base it was trained from.
    spec = job.policy if job.policy in KNOWN_ARCHITECTURES else job.model.base
    if spec is None or str(spec).startswith("packaged:"):
        return None  # the packaged real model is loaded for real in test_real_model.py
    return spec, job.stage == "rm"


BIG = [r for r in RECIPES if _model_to_check(r)]


@pytest.mark.parametrize("name", BIG)
def test_big_recipe_models_build_on_meta_device(name):
    spec, reward = _model_to_check(name)
    assert spec in KNOWN_ARCHITECTURES or spec.startswith("packaged:"), (
        f"{name}: {spec} has no known architecture to check offline"
    )
    model = build_on_meta(spec, reward=reward)
    n = sum(p.numel() for p in model.parameters())
    assert all(p.device.type == "meta" for p in model.parameters())
    if not reward and spec in PARAMS:
        assert n == PARAMS[spec]
    if reward:
        head = getattr(model, "score", None) or model.classifier  # decoder / encoder RM
        assert model.config.num_labels == 1 and head.out_features == 1


def test_every_gpu_recipe_is_checked_on_meta():
    assert {
        "llama7b_sft",
        "llama7b_rm",
        "llama7b_args",
        "opt1.3b_ppo",
        "opt2.7b_sft",
        "llama7b_eval",
        "llama7b_arm",
        "opt1.3b_token_rm",
        "llama7b_genarm",
    } <= set(BIG)


def test_llama7b_builds_on_meta_with_its_parameter_count():
    assert (
        sum(p.numel() for p in build_on_meta("huggyllama/llama-7b").parameters()) == 6_738_415_616
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["recipe=nope"], "unknown recipe 'nope'; available recipes: evaluate, llama7b_args"),
        ([], "name a recipe: recipe=NAME"),
        (
            ["recipe=tiny_sft", "optim.lrr=1"],
            "unknown config key 'optim.lrr'; did you mean optim.lr",
        ),
        (["recipe=tiny_sft", "decode.wieght=1"], "did you mean decode.weight"),
        (["recipe=tiny_sft", "optim.lr=abc"], "config key 'optim.lr': value 'abc' is not a valid"),
        (
            ["recipe=tiny_sft", "strategy=zero9"],
            "unknown strategy option 'zero9'; available: auto, ddp, deepspeed_zero2",
        ),
        (["recipe=tiny_sft", "logger.name=xx"], "logger.name='xx' is not valid"),
        (["recipe=tiny_sft", "optim.batch_size=33"], "not a multiple of optim.micro_batch_size"),
    ],
)
def test_bad_config_names_the_problem(overrides, message):
    with pytest.raises(ConfigError) as info:
        compose(overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_sweep_expands_to_cartesian_product():
    jobs = expand_sweep(["recipe=tiny_args", "decode.weight=0,0.5", "decode.topk=10,40"])
    assert len(jobs) == 4
    assert ["recipe=tiny_args", "decode.weight=0.5", "decode.topk=40"] in jobs


def test_overrides_reach_the_typed_config():
    job = compose(["recipe=tiny_args", "decode.weight=2.5", "trainer.devices=2", "data.limit=7"])
    assert job.decode.weight == 2.5 and job.trainer.devices == 2 and job.data.limit == 7


def test_accumulation_is_derived_from_global_and_micro_batch():
    job = compose(["recipe=opt1.3b_sft"])
    assert job.optim.accumulation(world_size=8) == job.optim.batch_size // (
        job.optim.micro_batch_size * 8
    )
    with pytest.raises(ConfigError, match="not divisible"):
        job.optim.accumulation(world_size=3)


_OWN = """# @package _global_
# Command:  python -m argsfw.fit recipe=my_sft.yaml
# Needs:    a laptop CPU
defaults:
  - override /data: tiny
stage: sft
optim:
  lr: 3.0e-4
"""


def test_a_recipe_file_of_ones_own_composes_by_path(tmp_path):
    path = tmp_path / "my_sft.yaml"
    path.write_text(_OWN)
    job = compose([f"recipe={path}", "optim.warmup_steps=3"])
    assert job.recipe == "my_sft" and job.stage == "sft"
    assert job.optim.lr == 3.0e-4 and job.optim.warmup_steps == 3


def test_recipe_path_env_adds_a_folder_of_recipes(tmp_path, monkeypatch):
    (tmp_path / "my_sft.yaml").write_text(_OWN)
    monkeypatch.setenv(RECIPE_PATH_ENV, str(tmp_path))
    assert "my_sft" in available_recipes() and "tiny_sft" in available_recipes()
    assert compose(["recipe=my_sft"]).optim.lr == 3.0e-4


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("duplicate", "recipe 'tiny_sft' is defined twice"),
        ("no_header", "must start with the line '# @package _global_'"),
        ("missing_file", "recipe file"),
        ("bad_env_dir", "which is not a folder"),
    ],
)
def test_bad_recipe_sources_are_one_line_errors(tmp_path, monkeypatch, setup, message):
    spec = "recipe=tiny_sft"
    if setup == "duplicate":
        (tmp_path / "tiny_sft.yaml").write_text(_OWN)
        monkeypatch.setenv(RECIPE_PATH_ENV, str(tmp_path))
    elif setup == "no_header":
        (tmp_path / "r.yaml").write_text(_OWN.split("\n", 1)[1])
        spec = f"recipe={tmp_path / 'r.yaml'}"
    elif setup == "missing_file":
        spec = f"recipe={tmp_path / 'absent.yaml'}"
    else:
        monkeypatch.setenv(RECIPE_PATH_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as info:
        compose([spec])
    assert message in str(info.value) and "\n" not in str(info.value)
