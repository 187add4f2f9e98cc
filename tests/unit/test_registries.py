"""The decoding-method and stage registries: built-ins are declared exactly as one's own (one
file each, found by scanning the package), knobs are set, checked, listed, recorded and
fingerprinted the same way for both, and examples/plugins uses only the public API."""

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


def _run(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_each_method_is_declared_once_in_its_module():
    """Every built-in method name is a string literal in its own module under
    argsfw/decoding/methods and nowhere else in the library (the engine, predict, evaluate,
    the plots and the slow references name none)."""
    texts = {p: p.read_text() for p in (REPO / "argsfw").rglob("*.py")}
    original = {o for m in methods().values() for o in m.original_names}
    for name in {m.name for m in methods().values()} - original:  # "greedy": the original API's too
        holders = [p for p, t in texts.items() if f'"{name}"' in t or f"'{name}'" in t]
        holders = [p for p in holders if f'method: str = "{name}"' not in texts[p]]  # the default
        assert len(holders) == 1 and holders[0].parent.name == "methods", (name, holders)


def test_a_new_builtin_method_is_one_file(tmp_path, monkeypatch):
    """A module dropped into argsfw.decoding.methods is found by the package scan: its method
    composes by name (no YAML), its knobs are set as decode.<knob>, listed and checked."""
    import argsfw.decoding.methods as package
    import argsfw.decoding.registry as registry

    (tmp_path / "zz_new.py").write_text(
        "from dataclasses import dataclass\n"
        "from argsfw.api import Method, knob\n"
        "@dataclass\n"
        "class K:\n"
        "    beta: float = knob(0.5, 'how much', ge=0, le=1)\n"
        "def _build(p):\n"
        "    from argsfw.decoding.baselines import greedy_chooser\n"
        "    return None, greedy_chooser\n"
        "ZZ = Method(name='zz-new', summary='a test method', settings=K, build=_build)\n"
    )
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_METHODS", {})
    monkeypatch.setattr(registry, "_ORIGINAL", {})
    monkeypatch.setattr(registry, "_LOADED", False)
    assert get_method("zz-new").knobs == ("beta",)
    job = compose(["recipe=tiny_args", "decode=zz-new", "decode.beta=0.25"])
    assert (job.decode.method, job.decode.beta) == ("zz-new", 0.25)
    with pytest.raises(ConfigError, match=r"decode.beta must be a number in \[0, 1\], got 2"):
        compose(["recipe=tiny_args", "decode=zz-new", "decode.beta=2"])
    from argsfw.methods import describe

    listed = next(m for m in describe()["methods"] if m["name"] == "zz-new")
    assert listed["knobs"] == [
        {"name": "beta", "default": 0.5, "range": "a number in [0, 1]", "doc": "how much"}
    ]


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
    c = compose(["recipe=tiny_args", "decode.method=args-greedy"]).decode
    assert a == b == c and a.method == "args-greedy"


def test_decode_section_holds_the_shared_keys_and_the_method_knobs_only():
    """The settings are DecodeConfig's shared keys plus the chosen method's own knobs: another
    method's knob is an error naming this method's knobs; switching methods leaves none behind."""
    from argsfw.decoding.config import SHARED, DecodeConfig

    assert len(SHARED) <= 12 and "weight" not in SHARED and not hasattr(DecodeConfig(), "weight")
    job = compose(["recipe=tiny_args", "decode.method=nucleus", "decode.top_p=0.5"])
    assert job.decode.knobs() == {"temperature": 0.7, "top_p": 0.5}
    with pytest.raises(ConfigError) as err:
        compose(["recipe=tiny_args", "decode=greedy", "decode.weight=2"])
    assert "decode.weight is not a setting of greedy; its knobs: none" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean decode.weight"):
        compose(["recipe=tiny_args", "decode.wieght=2"])


def test_one_weight_default_everywhere():
    """w: the ARGS knobs, every decode group and ARGS.generate share one default."""
    import inspect

    from argsfw.decoding.methods.args import DEFAULT_WEIGHT
    from argsfw.decoding.original_api import ARGS

    assert inspect.signature(ARGS.generate).parameters["weight"].default == DEFAULT_WEIGHT
    for group in sorted((REPO / "configs" / "decode").glob("*.yaml")):
        decode = compose(["recipe=tiny_args", f"decode={group.stem}"]).decode
        assert getattr(decode, "weight", DEFAULT_WEIGHT) == DEFAULT_WEIGHT, group.name


def test_method_declaration_is_checked():
    with pytest.raises(ValueError, match="exactly one of build= and run="):
        Method(name="x", summary="", build=None, run=None)
    with pytest.raises(ValueError, match="needs="):
        Method(name="x", summary="", needs="oracle", build=lambda p: None)
    with pytest.raises(ValueError, match="knob 'weight', which its settings= do not declare"):
        Method(name="x", summary="", guide_knob="weight", build=lambda p: None)


def test_stage_list_is_one_list():
    """Schema sections, fit stages and entries all come from the registry (a package scan): every
    stage declared in argsfw/stages is listed, fit stages first, in their declared order."""
    import re

    from argsfw.config.schema import job_schema

    declared = {
        m for p in (REPO / "argsfw" / "stages").glob("*.py")
        for m in re.findall(r'Stage\(\s*name="(\w+)"', p.read_text())
    }  # fmt: skip
    assert declared == set(stages()) and len(declared) >= 10
    fit = names("fit")
    assert fit[0] == "sft" and names()[: len(fit)] == fit
    orders = [get_stage(n).order for n in fit]
    assert orders == sorted(orders)
    fields = {f for f in job_schema().__dataclass_fields__}
    for stage in stages().values():
        assert stage.config is None or stage.section in fields, stage.name
    with pytest.raises(ConfigError, match="stage='nope' is not valid"):
        get_stage("nope")


def test_a_new_builtin_stage_is_its_declaration_file(tmp_path, monkeypatch):
    """A declaration module dropped into argsfw.stages is found by the package scan: listed,
    its section in the schema, a recipe naming it composes."""
    import argsfw.stages as package
    from argsfw.config import schema

    (tmp_path / "zz_stage.py").write_text(
        "from dataclasses import dataclass\n"
        "from argsfw.stages import Stage\n"
        "@dataclass\n"
        "class ZZConfig:\n"
        "    gamma: float = 0.5\n"
        "ZZ = Stage(name='zz', entry='fit', summary='a test stage', config=ZZConfig,\n"
        "           build='zz_module:build', makes='policy', order=99)\n"
    )
    recipe = tmp_path / "zz.yaml"
    recipe.write_text("# @package _global_\nstage: zz\nzz:\n  gamma: 0.25\n")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    monkeypatch.setattr(package, "_STAGES", {})
    monkeypatch.setattr(package, "_LOADED", False)
    monkeypatch.setattr(schema, "_SCHEMAS", {})
    assert names("fit")[-1] == "zz"
    assert compose([f"recipe={recipe}"]).zz.gamma == 0.25


def test_names_are_read_from_declarations():
    """Pipeline inputs, predict's hints and the plots' trained policies follow Stage.makes,
    Stage.order and the plot style declared on the stage, not stage names."""
    from argsfw.decoding.types import RewardKind
    from argsfw.eval.plots import TRAINED
    from argsfw.stages import POLICY, maker

    assert maker(POLICY).name == "sft" and maker("reward_model:value").name == "value"
    assert (
        get_stage("rm").reward_kind is RewardKind.SEQUENCE and get_stage("sft").reward_kind is None
    )
    assert set(TRAINED) == {n for n, s in stages().items() if s.color} == {"ppo", "dpo"}


def test_print_config_shows_only_the_sections_a_job_reads():
    from argsfw.config.compose import to_yaml

    text = to_yaml(compose(["recipe=tiny_args"]), only_used=True)
    top = {line.split(":")[0] for line in text.splitlines() if line and not line[0].isspace()}
    assert {"decode", "predict", "model", "trainer"} <= top
    assert not top & {"rm", "ppo", "sft", "arm", "token_rm", "optim", "eval", "pipeline"}
    full = to_yaml(compose(["recipe=tiny_args"]))
    assert len(text.splitlines()) < 0.75 * len(full.splitlines())


def test_listing_command_names_every_method_and_stage_with_knob_docs(plugins):
    out = _run(
        "argsfw.methods", "my_plugins:ETA_ARGS", "my_plugins:REP_ARGS", "my_plugins:HINGE_RM"
    )
    assert out.returncode == 0, out.stderr
    for name in [*methods(), *names(), "eta-args", "rep-args", "my_plugins:HINGE_RM"]:
        assert f"  {name}  [" in out.stdout, name
    assert "decode.eta=0.1 (a number in [0, 1])  keep the top-k tokens" in out.stdout
    assert "decode.rep_penalty=0.0 (a number >= 0)  subtracted" in out.stdout
    assert "decode.topk=10 (an integer in [1, vocabulary])" in out.stdout
    assert "hinge_rm: margin=1.0" in out.stdout
    bad = _run("argsfw.methods", "my_plugins:NOPE")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_listing_command_help():
    out = _run("argsfw.methods", "--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m argsfw.methods")
    assert "decode.<knob>=VALUE" in out.stdout
    bad = _run("argsfw.methods", "--hlep")
    assert bad.returncode == 2 and "unknown option --hlep" in bad.stderr


def test_own_method_knobs_compose_like_builtins(plugins):
    """decode.<knob>=value, no '+' and no 'options.': typed, range-checked, labelled,
    fingerprinted and named in sweep folders like a built-in's."""
    from argsfw.cli import _sweep_suffix
    from argsfw.config.compose import expand_sweep
    from argsfw.prediction.settings import default_label, output_settings

    job = compose(["recipe=tiny_args", "decode=my_plugins:REP_ARGS", "decode.rep_penalty=2"])
    assert job.decode.method == "my_plugins:REP_ARGS" and job.decode.rep_penalty == 2.0
    assert default_label(job) == "rep-args w=1.5 k=10 rep=2"
    assert output_settings(job)["decode"]["rep_penalty"] == 2.0
    with pytest.raises(ConfigError) as err:
        compose(["recipe=tiny_args", "decode=my_plugins:REP_ARGS", "decode.rep_penalty=-1"])
    assert str(err.value) == "decode.rep_penalty must be a number >= 0, got -1.0"
    with pytest.raises(ConfigError) as err:
        compose(["recipe=tiny_args", "decode=my_plugins:REP_ARGS", "decode.rep=2"])
    msg = str(err.value)
    assert "decode.rep is not a setting of rep-args" in msg and "decode.rep_penalty" in msg
    with pytest.raises(ConfigError, match="set directly now, e.g. decode.eta=0.2"):
        compose(["recipe=tiny_args", "decode=my_plugins:ETA_ARGS", "+decode.options.eta=0.2"])
    sweep = ["decode=my_plugins:ETA_ARGS", "decode.eta=0,0.2"]
    runs = expand_sweep(sweep)
    assert [_sweep_suffix(r, {"decode.eta"}) for r in runs] == ["decode.eta=0", "decode.eta=0.2"]


def test_old_fingerprints_of_own_methods_keep_resuming():
    """A run fingerprinted when one's own knobs sat under decode.options still resumes."""
    from argsfw.callbacks.outputs import _comparable

    old = {"decode": {"method": "my_plugins:ETA_ARGS", "seed": 0, "options": {"eta": 0.2}}}
    new = {"decode": {"method": "my_plugins:ETA_ARGS", "seed": 0, "eta": 0.2}}
    assert _comparable(old, new) == new


def test_own_method_decodes_through_the_engine(plugins, tiny_kit):
    """eta-args by import path: eta=0 keeps every top-k candidate, so it is ARGS-greedy exactly;
    eta=1 keeps only the policy's best, so it is greedy exactly. rep-args reads each row's
    generated tokens from the step context: rep_penalty=0 is ARGS-greedy exactly, a large one
    repeats less."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from argsfw.api import decode_settings
    from argsfw.decoding import ArgsDecoder

    tok = AutoTokenizer.from_pretrained(tiny_kit["policy"])
    llm = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"])
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_kit["reward_model"])
    dec = ArgsDecoder(llm, tok, rm)
    prompts = ["the cat sat on", "a story about", "why is the sky", "one two"]
    base = decode_settings(max_new_tokens=12, topk=8, weight=3.0, batch_size=4)

    def run(method, **knobs):
        gens, _ = dec.generate(prompts, base, method=method, **knobs)
        return [g.new_ids for g in gens]

    eta, rep = "my_plugins:ETA_ARGS", "my_plugins:REP_ARGS"
    assert run(eta, eta=0.0) == run("args-greedy") == run(rep, rep_penalty=0.0)
    assert run(eta, eta=1.0) == run("greedy")
    assert run(eta, eta=1.0) != run("args-greedy")  # w=3 does move ARGS off greedy here
    with pytest.raises(ValueError, match="zeta is not a setting of eta-args; its knobs: weight"):
        run(eta, zeta=1.0)
    with pytest.raises(ValueError, match=r"eta must be a number in \[0, 1\], got 2.0"):
        run(eta, eta=2.0)

    def repeats(rows):
        return sum(len(r) - len(set(r)) for r in rows)

    assert repeats(run("args-greedy")) > 0 and repeats(run(rep, rep_penalty=100.0)) == 0


def test_step_context_carries_each_rows_prompt_and_generated_tokens(tiny_kit, monkeypatch):
    """What the chooser sees in ctx.generated[j] is exactly what row j generated before the step,
    after rows finish and shift too (ctx.rows keeps naming the prompt)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from argsfw.api import decode_settings
    from argsfw.decoding import ArgsDecoder

    tok = AutoTokenizer.from_pretrained(tiny_kit["policy"])
    llm = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"])
    seen: list[tuple[int, list[int], list[int]]] = []

    def record(logits, scorer, ctx):
        for j, row in enumerate(ctx.rows):
            seen.append((row, list(ctx.prompts[j]), list(ctx.generated[j])))
        return logits.argmax(-1), None

    import argsfw.decoding.registry as registry

    method = Method(name="recorder", summary="", build=lambda p: (None, record))
    registry.methods()  # the built-ins first
    monkeypatch.setitem(registry._METHODS, "recorder", method)
    prompts = ["the cat sat on", "a story about the", "why"]
    dec = ArgsDecoder(llm, tok)
    settings = decode_settings("recorder", max_new_tokens=6, batch_size=3)
    gens, _ = dec.generate(prompts, settings, stop_at_eos=False)
    dec.eos_ids = [gens[0].new_ids[1]]  # row 0 now stops at step 2: the rows shift
    seen.clear()
    gens, _ = dec.generate(prompts, settings)
    assert any(len(g.new_ids) < 6 for g in gens)
    for row, prompt, generated in seen:
        assert prompt == gens[row].prompt_ids
        assert generated == gens[row].new_ids[: len(generated)]
    for g in gens:  # every step of every row was seen, with all tokens before it
        steps = sorted(len(gen) for row, _, gen in seen if row == g.index)
        assert steps == list(range(len(g.new_ids)))


def test_own_stage_composes_with_its_section(plugins):
    job = compose(["recipe=examples/plugins/hinge_rm.yaml", "hinge_rm.margin=0.5"])
    assert job.stage == "my_plugins:HINGE_RM" and job.hinge_rm.margin == 0.5
    with pytest.raises(ConfigError, match="hinge_rm.margin=-1.0 must be > 0"):
        compose(["recipe=examples/plugins/hinge_rm.yaml", "hinge_rm.margin=-1"])
    with pytest.raises(ConfigError, match="unknown config key 'hinge_rm.nope'"):
        compose(["recipe=examples/plugins/hinge_rm.yaml", "hinge_rm.nope=1"])


def test_examples_use_only_the_public_api():
    """Every argsfw import in examples/ is from argsfw.api and names nothing private."""
    found = []
    for path in (REPO / "examples").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("argsfw"):
                found += [(path.name, node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [
                    (path.name, a.name, "") for a in node.names if a.name.startswith("argsfw")
                ]
    assert found, "the examples import argsfw"
    bad = [f for f in found if f[1] != "argsfw.api" or f[2].startswith("_")]
    assert not bad, bad
    import argsfw.api as api

    assert all(hasattr(api, name) for _, _, name in found)


def test_composing_with_plugins_imports_neither_torch_nor_lightning():
    """Declarations (built-in and one's own, through argsfw.api) are light: composing a predict
    job with one's own method and a fit job with one's own stage loads no torch or Lightning."""
    code = (
        "import sys; from argsfw.config.compose import compose; "
        "compose(['recipe=tiny_args', 'decode=my_plugins:REP_ARGS', 'decode.rep_penalty=2']); "
        "compose(['recipe=examples/plugins/hinge_rm.yaml']); "
        "print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))"
    )
    import os

    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{PLUGINS}"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
