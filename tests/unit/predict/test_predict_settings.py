"""The original's config file, the output-settings fingerprint and rank detection of argsfw.predict."""

from __future__ import annotations

import pytest

from argsfw.config.compose import compose
from argsfw.errors import ConfigError
from argsfw.predict import (
    default_label,
    expand_settings,
    is_global_zero,
    needs_reward_model,
    output_settings,
    read_config_file,
)


def test_config_file_lines_map_to_decode_settings(tmp_path):
    f = tmp_path / "example.config"
    f.write_text(
        '{"rm_weight": 1.0, "topk": 10, "mode": "greedy", "sample_temp": null}\n\n'
        '{"rm_weight": 0.5, "topk": 40, "mode": "topk", "sample_temp": 0.9}\n'
        '{"rm_weight": 2, "topk": 5, "mode": "greedy_large", "chunk_size": 2}\n'
    )
    assert read_config_file(str(f)) == [
        {"weight": 1.0, "topk": 10, "method": "args-greedy"},
        {"weight": 0.5, "topk": 40, "method": "args-stochastic", "temperature": 0.9},
        {"weight": 2, "topk": 5, "method": "args-greedy-large", "chunk_size": 2},
    ]


@pytest.mark.parametrize(
    "text, match",
    [
        (
            '{rm_weight": 1.0, "topk": 10}\n',
            r"example.config:1: not valid JSON",
        ),  # the original README's typo
        ('{"rm_weight": 1.0}\n{"weight": 2}\n', r"example.config:2: unknown key\(s\) \['weight'\]"),
        ("[1, 2]\n", "expected a JSON object"),
        ("\n", "holds no settings"),
    ],
)
def test_bad_config_files_name_file_and_line(tmp_path, text, match):
    f = tmp_path / "example.config"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_config_file(str(f))


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"rm_weight": "1.5"}\n', r'example.config:1: rm_weight="1.5" must be a finite number'),
        ('{"rm_weight": 1}\n{"topk": 2.5}\n', r"example.config:2: topk=2.5 must be an integer"),
        ('{"rm_weight": Infinity}\n', r"example.config:1: rm_weight=Infinity must be a finite"),
        ('{"chunk_size": "x"}\n', r'chunk_size="x" must be an integer or "auto"'),
        ('{"mode": "beam"}\n', r'example.config:1: mode="beam": unknown decoding method'),
        ('{"topk": 0}\n', r"example.config:1: topk must be an integer in \[1, vocabulary\], got 0"),
        (
            '{"mode": "topk", "sample_temp": 0}\n',
            r"example.config:1: sample_temp must be a number > 0",
        ),
    ],
)
def test_config_file_values_are_typed_and_range_checked(tmp_path, text, match):
    """Every line is checked at start-up, naming the file, line and the file's own key."""
    from argsfw.decoding.config import decode_settings

    f = tmp_path / "example.config"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_config_file(str(f), decode_settings())


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(str(tmp_path / "nope.config"))


def test_expand_settings_gives_one_run_dir_per_line(tmp_path):
    from argsfw.config.run_dir import RunDir

    f = tmp_path / "c.config"
    f.write_text('{"rm_weight": 0}\n{"rm_weight": 1, "mode": "topk"}\n')
    job = compose(["recipe=tiny_args", f"decode.config_file={f}"])
    jobs = expand_settings(job, RunDir(tmp_path / "run"))
    assert [r.path.name for _, r in jobs] == ["config_0", "config_1"]
    assert [j.decode.weight for j, _ in jobs] == [0, 1]
    assert jobs[1][0].decode.method == "args-stochastic" and jobs[1][0].decode.config_file is None


def test_output_settings_ignore_batch_size_and_devices():
    a = compose(["recipe=tiny_args"])
    b = compose(["recipe=tiny_args", "decode.batch_size=3", "trainer.devices=2"])
    c = compose(["recipe=tiny_args", "decode.topk=40"])
    assert output_settings(a) == output_settings(b)
    assert output_settings(a) != output_settings(c)


def test_output_settings_cover_which_prompts_are_decoded():
    # two runs of different data.limit in one directory lost records (issue 19)
    a = compose(["recipe=tiny_args", "data.limit=7"])
    for other in ("data.limit=8", "data.offset=1", "data.run_percent=50"):
        assert output_settings(a) != output_settings(
            compose(["recipe=tiny_args", "data.limit=7", other])
        )


def test_reward_model_only_when_the_method_uses_it():
    job = compose(["recipe=tiny_args", "decode.weight=0"])
    assert not needs_reward_model(job.decode) and output_settings(job)["reward_model"] is None
    assert needs_reward_model(compose(["recipe=tiny_args", "decode=best_of_n"]).decode)
    assert default_label(compose(["recipe=tiny_args"])) == "args-greedy w=1.5 k=10"
    assert default_label(compose(["recipe=tiny_args", "predict.label=mine"])) == "mine"


@pytest.mark.parametrize(
    "env, zero",
    [
        ({}, True),
        ({"LOCAL_RANK": "1"}, False),
        ({"RANK": "3"}, False),
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
        ({"SLURM_PROCID": "0", "LOCAL_RANK": "0"}, True),
    ],
)
def test_global_rank_zero_from_launcher_env(monkeypatch, env, zero):
    for k in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert is_global_zero() is zero


def test_a_run_may_grow_its_data_limit_but_not_change_its_selection_otherwise(tmp_path):
    from argsfw.callbacks.outputs import OutputConflictError, OutputState, check_settings

    def fp(*extra):
        return output_settings(compose(["recipe=tiny_args", *extra]))

    has = OutputState(records={"a": {"id": "a"}})
    recorded = fp("data.limit=5")
    check_settings(tmp_path, recorded, fp("data.limit=6"), has)  # decode more prompts
    check_settings(tmp_path, recorded, fp("data.limit=null"), has)
    for other in ("data.limit=4", "data.limit=6 data.offset=1"):
        with pytest.raises(OutputConflictError, match="data\\.(limit|offset)"):
            check_settings(tmp_path, recorded, fp(*other.split()), has)
    old = {**recorded, "data": {k: v for k, v in recorded["data"].items() if k != "limit"}}
    check_settings(tmp_path, old, fp("data.limit=3"), has)  # fingerprinted before limit was


def test_default_temperature_keeps_earlier_runs_fingerprints():
    """None resolves to what runs made before recorded: 0.7 for the sampling methods but genarm
    (whose group set 0.5 = 1/(1+alpha)); greedy methods do not read it, so it is not in their
    fingerprint, and a run recorded with every knob (the earlier fingerprint) still resumes."""
    from argsfw.callbacks.outputs import _comparable

    for decode, temperature in [
        ("args_greedy", None), ("args_stochastic", 0.7), ("genarm_greedy", None), ("genarm", 0.5),
    ]:  # fmt: skip
        job = compose(["recipe=tiny_args", f"decode={decode}"])
        now = output_settings(job)
        assert now["decode"].get("temperature") == temperature, decode
        earlier = {
            **now,
            "decode": {**now["decode"], "temperature": 0.7, "top_p": 0.9, "num_samples": 4},
        }
        if temperature is None:  # knobs the method ignores: dropped before comparing
            assert _comparable(earlier, now) == now, decode
    job = compose(["recipe=tiny_args", "decode=args_greedy"])
    now = output_settings(job)
    changed = {**now, "decode": {**now["decode"], "weight": 0.5}}  # a knob it reads: refused
    assert _comparable(changed, now) != now
