"""The decoding-method and stage registries: one declaration per method and stage, lookups by
either spelling, and methods and stages of one's own (examples/plugins) used without any edit
to argsfw."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from argsfw.config.compose import compose
from argsfw.decoding.registry import Method, UnknownMethodError, get_method, methods
from argsfw.errors import ConfigError
from argsfw.stages import get_stage, names, stages

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "examples" / "plugins"


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("PYTHONPATH", str(PLUGINS))
    import my_plugins

    return my_plugins


def test_each_method_is_declared_once_in_its_module():
    """Every built-in method name is a string literal in its own module under
    argsfw/decoding/methods, and the engine, predict, evaluate and plots name none."""
    texts = {p: p.read_text() for p in (REPO / "argsfw").rglob("*.py")}
    original = {o for m in methods().values() for o in m.original_names}
    for name in set(methods()) - original:  # "greedy" is also the original API's ARGS-greedy
        holders = [p for p, t in texts.items() if f'"{name}"' in t or f"'{name}'" in t]
        own = [p for p in holders if p.parent.name == "methods"]
        others = [p.name for p in holders if p not in own]
        # besides: the default method (config.py) and the slow reference, which shares no code
        # with the registry on purpose and names the rules it re-implements (reference.py)
        assert len(own) == 1 and set(others) <= {"config.py", "reference.py"}, (name, holders)


def test_spellings_and_original_names():
    assert get_method("args_greedy") is get_method("ARGS-Greedy") is get_method("args-greedy")
    assert get_method("greedy").name == "greedy"  # the engine's plain greedy ...
    assert get_method("greedy", original_api=True).name == "args-greedy"  # ... the original API's
    assert get_method("topk").name == "args-stochastic"
    with pytest.raises(UnknownMethodError, match="valid methods: args-greedy"):
        get_method("beam")
    with pytest.raises(UnknownMethodError, match="cannot import no_such_pkg"):
        get_method("no_such_pkg.mod:X")


def test_decode_group_by_either_spelling():
    a = compose(["recipe=tiny_args", "decode=args-greedy"]).decode
    b = compose(["recipe=tiny_args", "decode=args_greedy"]).decode
    assert a == b and a.method == "args-greedy"


def test_one_weight_default_everywhere():
    """w: DecodeConfig, every decode group and ARGS.generate share one default."""
    import inspect

    from argsfw.decoding.args import ARGS
    from argsfw.decoding.config import DEFAULT_WEIGHT, decode_settings

    assert decode_settings().weight == DEFAULT_WEIGHT
    assert inspect.signature(ARGS.generate).parameters["weight"].default == DEFAULT_WEIGHT
    for group in sorted((REPO / "configs" / "decode").glob("*.yaml")):
        decode = compose(["recipe=tiny_args", f"decode={group.stem}"]).decode
        assert decode.weight == DEFAULT_WEIGHT, group.name


def test_method_declaration_is_checked():
    with pytest.raises(ValueError, match="exactly one of build= and run="):
        Method(name="x", summary="", build=None, run=None)
    with pytest.raises(ValueError, match="needs="):
        Method(name="x", summary="", needs="oracle", build=lambda p: None)


def test_stage_list_is_one_list():
    """Schema sections, fit stages and entries all come from the registry."""
    from argsfw.config.schema import job_schema

    assert names("fit") == ["sft", "rm", "ppo", "dpo", "arm", "token_rm", "value"]
    fields = {f for f in job_schema().__dataclass_fields__}
    for stage in stages().values():
        assert stage.config is None or stage.section in fields, stage.name
    with pytest.raises(ConfigError, match="stage='nope' is not valid"):
        get_stage("nope")


def test_print_config_shows_only_the_sections_a_job_reads():
    from argsfw.config.compose import to_yaml

    text = to_yaml(compose(["recipe=tiny_args"]), only_used=True)
    top = {line.split(":")[0] for line in text.splitlines() if line and not line[0].isspace()}
    assert {"decode", "predict", "model", "trainer"} <= top
    assert not top & {"rm", "ppo", "sft", "arm", "token_rm", "optim", "eval", "pipeline"}
    full = to_yaml(compose(["recipe=tiny_args"]))
    assert len(text.splitlines()) < 0.75 * len(full.splitlines())


def test_listing_command_names_every_method_and_stage(plugins):
    out = subprocess.run(
        [sys.executable, "-m", "argsfw.methods", "my_plugins:ETA_ARGS", "my_plugins:HINGE_RM"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for name in [*methods(), *names(), "eta-args", "my_plugins:HINGE_RM"]:
        assert f"  {name}  [" in out.stdout, name
    assert "decode.options.eta=0.1" in out.stdout and "hinge_rm: margin=1.0" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "argsfw.methods", "my_plugins:NOPE"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_own_method_decodes_through_the_engine(plugins, tiny_kit):
    """eta-args (examples/plugins) by import path: eta=0 keeps every top-k candidate, so it is
    ARGS-greedy exactly; eta=1 keeps only the policy's best, so it is greedy exactly."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from argsfw.decoding import ArgsDecoder

    tok = AutoTokenizer.from_pretrained(tiny_kit["policy"])
    llm = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"])
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_kit["reward_model"])
    dec = ArgsDecoder(llm, tok, rm)
    prompts = ["the cat sat on", "a story about", "why is the sky", "one two"]
    base = decode_settings(max_new_tokens=12, topk=8, weight=3.0, batch_size=4)

    def run(method, **opts):
        gens, _ = dec.generate(prompts, base, method=method, options=opts)
        return [g.new_ids for g in gens]

    own = "my_plugins:ETA_ARGS"
    assert run(own, eta=0.0) == run("args-greedy")
    assert run(own, eta=1.0) == run("greedy")
    assert run(own, eta=1.0) != run("args-greedy")  # w=3 does move ARGS off greedy here
    with pytest.raises(ValueError, match="decode.options.zeta is not an option of eta-args"):
        run(own, zeta=1.0)
    with pytest.raises(ValueError, match=r"eta=2.0 must be in \[0, 1\]"):
        run(own, eta=2.0)


def test_own_stage_composes_with_its_section(plugins):
    job = compose(["recipe=examples/plugins/hinge_rm.yaml", "hinge_rm.margin=0.5"])
    assert job.stage == "my_plugins:HINGE_RM" and job.hinge_rm.margin == 0.5
    with pytest.raises(ConfigError, match="hinge_rm.margin=-1.0 must be > 0"):
        compose(["recipe=examples/plugins/hinge_rm.yaml", "hinge_rm.margin=-1"])
    with pytest.raises(ConfigError, match="unknown config key 'hinge_rm.nope'"):
        compose(["recipe=examples/plugins/hinge_rm.yaml", "hinge_rm.nope=1"])


def test_plugins_file_is_plain_python():
    ast.parse((PLUGINS / "my_plugins.py").read_text())
