"""Start-up validation as library calls: loading info, tied weights, list overrides, decode checks.

The end-to-end contract (exit code 2, one line, nothing written) is the table in
tests/integration/test_bad_inputs.py; these pin the pieces it relies on.
"""

from __future__ import annotations

import json
import shutil

import pytest

from argsfw.cli import normalise_list_overrides
from argsfw.config.compose import compose
from argsfw.decoding.config import check_decode_settings, decode_settings
from argsfw.decoding.types import DecodeInputError
from argsfw.models import ModelPathError, load_policy, load_reward_model


def _without_architectures(src, dst):
    """A copy of a model dir whose config.json does not say its head (the fast check can't tell)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.pop("architectures")
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_reward_model_as_policy_is_refused_by_its_loading_info(tiny_kit, tmp_path):
    rm = _without_architectures(tiny_kit["reward_model"], tmp_path / "rm")
    with pytest.raises(ModelPathError) as err:
        load_policy(rm)
    msg = str(err.value)
    assert "lacks lm_head.weight" in msg and "would be initialised at random" in msg
    assert "has weights of another head (score.weight)" in msg and "\n" not in msg


def test_causal_lm_as_reward_model_is_refused_by_its_loading_info(tiny_kit, tmp_path):
    lm = _without_architectures(tiny_kit["policy"], tmp_path / "lm")
    with pytest.raises(ModelPathError, match=r"lacks score.weight .*lm_head.weight"):
        load_reward_model(lm)


def test_tied_embeddings_are_not_missing_weights(tiny_kit, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_kit["policy"])
    cfg.tie_word_embeddings = True
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(tmp_path / "tied")
    for f in tiny_kit["policy"].glob("tokenizer*"):
        shutil.copy(f, tmp_path / "tied")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tied" / "model.safetensors"), "pt") as st:
        stored = list(st.keys())
    assert "lm_head.weight" not in stored  # stored once, as the embedding
    loaded = load_policy(tmp_path / "tied")
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_rm_from_a_policy_may_have_a_new_head_but_not_a_new_body(tiny_kit, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from argsfw.models import load_checked

    rm = load_checked(
        AutoModelForSequenceClassification,
        tiny_kit["policy"],
        "policy",
        num_labels=1,
        new_head=True,
    )
    assert rm.score.out_features == 1
    with pytest.raises(ModelPathError, match="lacks score.weight"):
        load_checked(AutoModelForSequenceClassification, tiny_kit["policy"], "policy", num_labels=1)


@pytest.mark.parametrize(
    ("given", "composed"),
    [
        ("outputs=runs/x", ["runs/x"]),
        ("outputs=args=runs/a", ["args=runs/a"]),  # a row label
        ("outputs=[runs/a,runs/b]", ["runs/a", "runs/b"]),  # already a list
        ("outputs=runs/w=1,k=2", ["runs/w=1,k=2"]),  # a sweep's run dir: one path
    ],
)
def test_one_output_path_is_a_list_of_one(given, composed):
    job = compose(normalise_list_overrides([given]), default_recipe="evaluate")
    assert job.outputs == composed


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(topk=0), "decode.topk must be an integer in [1, vocabulary], got 0"),
        (dict(weight=float("nan")), "decode.weight must be any finite number"),
        (dict(method="nucleus", top_p=0.0), "decode.top_p must be a number in (0, 1]"),
        (dict(method="beam"), "decode.method='beam' is not a decoding method; choose one of"),
        (dict(max_new_tokens=0), "decode.max_new_tokens must be a positive integer"),
        (dict(scorer="fast"), "decode.scorer must be one of auto, tree, expanded, full"),
    ],
)
def test_decode_settings_are_checked_without_models(settings, message):
    from argsfw.decoding.config import DecodeConfig
    from argsfw.decoding.registry import find_method

    method = settings.get("method", "args-greedy")
    s = decode_settings(**settings) if find_method(method) else DecodeConfig(method=method)
    with pytest.raises(DecodeInputError) as err:
        check_decode_settings(s, prefix="decode.")
    assert message in str(err.value)


def test_topk_is_checked_against_the_vocabulary_when_known():
    assert check_decode_settings(decode_settings(topk=50), vocab=50).name == "args-greedy"
    with pytest.raises(DecodeInputError, match=r"topk must be an integer in \[1, 49\] \(the voc"):
        check_decode_settings(decode_settings(topk=50), vocab=49)


def test_a_predict_run_whose_every_prompt_was_skipped_is_an_error(tmp_path):
    # the safety net behind the start-up check: a run can still end with every prompt skipped
    # (e.g. prompts that only a cross-tokenizer RM finds too long)
    from argsfw.callbacks.outputs import read_state
    from argsfw.config.run_dir import RunDir
    from argsfw.data.types import PromptRecord
    from argsfw.predict import finish

    job = compose([f"run_dir={tmp_path}"], default_recipe="tiny_args")
    records = [PromptRecord(id=f"p{i}", prompt="hi") for i in range(2)]
    run = RunDir(tmp_path)
    run.start(job, "predict")
    before = read_state(tmp_path)
    with (tmp_path / "outputs.part-rank0.jsonl").open("w") as f:
        for i, r in enumerate(records):
            f.write(
                json.dumps({"id": r.id, "index": i, "skipped": "too_long", "n_prompt_tokens": 9})
            )
            f.write("\n")
    with pytest.raises(
        DecodeInputError, match=r"no prompt was decoded: all 2 were skipped \(2 too_long"
    ):
        finish(job, run, records, before, 0.1)
    assert not (tmp_path / "DONE").exists()


@pytest.mark.parametrize(
    "key", ["decode.temperature", "decode.top_p", "eval.judge.max_retry_after", "data.run_percent"]
)
def test_every_float_setting_must_be_finite(key):
    """One generic check: an infinite value passes ``> 0`` range checks, so the schema refuses it."""
    from argsfw.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^{key} must be a finite number, got inf; set"):
        compose(["recipe=tiny_args", "decode=args_stochastic", f"{key}=inf"])


def test_check_finite_names_list_items():
    from argsfw.config.schema import OptimConfig, check_finite
    from argsfw.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optim\.betas\[1\] must be a finite number, got nan"):
        check_finite({"betas": [0.9, float("nan")]}, "optim")
    check_finite(OptimConfig(), "optim")


@pytest.mark.parametrize(
    "code, needle", [(30, "is on a read-only file system"), (13, "is not writable")]
)
def test_unwritable_run_dir_is_refused(tmp_path, monkeypatch, code, needle):
    """Root passes permission checks and a read-only mount cannot be made in a test: the write
    fails as the kernel would fail it."""
    import os

    import argsfw.cli as cli
    from argsfw.errors import ConfigError

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(cli.tempfile, "TemporaryFile", refuse)
    with pytest.raises(
        ConfigError, match=rf"run_dir .*/run \({tmp_path}\) {needle} .*set run_dir="
    ):
        cli.check_writable(tmp_path / "run")


def test_unwritable_home_moves_wandb_dirs_into_the_run_dir(tmp_path, monkeypatch, caplog):
    """W&B with HOME unwritable: one warning line, its folders in the run dir, logging kept."""
    import logging

    from argsfw.loggers import _WANDB_DIRS, wandb_home_fallback

    home = tmp_path / "home_is_a_file"
    home.write_text("")
    monkeypatch.setenv("HOME", str(home))
    for name in _WANDB_DIRS:  # "" counts as unset, and monkeypatch restores what the call sets
        monkeypatch.setenv(name, "")
    with caplog.at_level(logging.WARNING, "argsfw"):
        wandb_home_fallback(tmp_path / "run")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "HOME" in caplog.records[0].getMessage() and "not writable" in caplog.text
    assert _dirs_under(tmp_path / "run" / "wandb_home", _WANDB_DIRS)


def _dirs_under(base, names) -> bool:
    import os

    return all(os.environ[n].startswith(str(base)) and os.path.isdir(os.environ[n]) for n in names)


def test_config_json_that_is_not_json_is_named(tiny_kit, tmp_path):
    bad = shutil.copytree(tiny_kit["policy"], tmp_path / "bad")
    (bad / "config.json").write_text('{"model_type": "llama",')
    from argsfw.models import resolve_model_path

    with pytest.raises(ModelPathError, match=r"config.json' is not valid JSON \(Expecting"):
        resolve_model_path(bad, "policy")
