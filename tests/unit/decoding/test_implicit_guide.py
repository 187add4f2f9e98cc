"""DPO's implicit reward as a token-level guide: loaded from a DPO run and its reference, read in
lock-step by token-rm and GenARM, checked against full no-cache forwards of both models."""

from __future__ import annotations

import json

import pytest
import torch

from argsfw.decoding import ArgsDecoder, DecodeConfig, decode_settings
from argsfw.decoding.implicit import ImplicitReward, load_implicit_reward, load_token_guide
from argsfw.decoding.types import RewardKind
from argsfw.models import ModelPathError

BETA = 0.5


@pytest.fixture(scope="module")
def guide(llama) -> ImplicitReward:
    """pi_dpo: a second tiny causal LM; pi_ref: the policy itself (as after DPO from the SFT policy)."""
    return ImplicitReward(llama.arm, llama.llm, BETA)


@torch.inference_mode()
def _reference_token_rm(m, prompt_ids, s, eos):
    """token-rm with r(v) = beta * (log pi_dpo - log pi_ref)(v), every step both models re-reading
    the whole sequence with their own forward (no cache), ARGS-greedy written out again."""
    ids, new = list(prompt_ids), []
    for _ in range(s.max_new_tokens):
        x = torch.tensor([ids])
        logits = m.llm(input_ids=x).logits[0, -1]
        dpo = torch.log_softmax(m.arm(input_ids=x).logits[0, -1].double(), 0)
        ref = torch.log_softmax(m.llm(input_ids=x).logits[0, -1].double(), 0)
        top, cands = logits.topk(s.topk)
        scores = [
            float(top[j]) + s.weight * BETA * float(dpo[v] - ref[v])
            for j, v in enumerate(cands.tolist())
        ]
        tok = int(cands[max(range(len(scores)), key=scores.__getitem__)])
        ids.append(tok)
        new.append(tok)
        if tok in eos:
            break
    return new


def test_token_rm_with_the_implicit_reward_equals_the_reference(llama, prompts, guide):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, guide)
    assert dec.reward_kind is RewardKind.IMPLICIT
    s = decode_settings("token-rm", weight=2.0, topk=5, max_new_tokens=8, batch_size=4)
    gens, stats = dec.generate(prompts, s)
    for g in gens:
        assert g.new_ids == _reference_token_rm(llama, g.prompt_ids, s, set(dec.eos_ids))
        # both models read the prompt once and every committed token but the last: 2 positions
        # each, none a re-read, and the FLOPs of two models of the policy's shape
        assert g.rm_tokens == 2 * (len(g.prompt_ids) + len(g.new_ids) - 1) == 2 * g.llm_tokens
        assert g.rm_reread == 0 and g.rm_flops == pytest.approx(2 * g.llm_flops)
    plain, _ = dec.generate(prompts, s, weight=0.0)
    assert [g.new_ids for g in gens] != [g.new_ids for g in plain]  # the guide steers


def test_genarm_with_alpha_one_over_beta_from_the_reference_is_the_dpo_policy(
    llama, prompts, guide
):
    """(log pi_ref + (1/beta) * beta * (log pi_dpo - log pi_ref)) / (1 + alpha) has pi_dpo's argmax:
    guided greedy decoding of the reference reproduces greedy decoding of the DPO policy."""
    guided, _ = ArgsDecoder(llama.llm, llama.tokenizer, guide).generate(
        prompts, decode_settings("genarm-greedy", alpha=1 / BETA, max_new_tokens=10)
    )
    dpo, _ = ArgsDecoder(llama.arm, llama.tokenizer).generate(
        prompts, DecodeConfig(method="greedy", max_new_tokens=10)
    )
    ref, _ = ArgsDecoder(llama.llm, llama.tokenizer).generate(
        prompts, DecodeConfig(method="greedy", max_new_tokens=10)
    )
    assert [g.new_ids for g in guided] == [g.new_ids for g in dpo]
    assert [g.new_ids for g in guided] != [g.new_ids for g in ref]


def _dpo_run(tmp_path, llama, base: str, beta=BETA):
    """A DPO run directory as the dpo stage writes it: a plain causal LM and its meta."""
    import copy

    from argsfw.models import save_hf

    run = tmp_path / "dpo"
    dpo = copy.deepcopy(llama.arm)
    del dpo.config.argsfw_reward_kind
    hf = save_hf(dpo, llama.tokenizer, run / "hf")
    meta = {"stage": "dpo", "kind": "policy", "dpo_beta": beta, "base_model": base}
    (run / "meta.json").write_text(json.dumps(meta))
    (hf / "meta.json").write_text(json.dumps(meta))
    return run


def test_a_dpo_run_loads_as_its_implicit_reward(tmp_path, llama):
    from argsfw.decoding.registry import get_method
    from argsfw.models import save_hf
    from argsfw.models.reward_kind import kind_error, reward_kind

    ref = save_hf(llama.llm, llama.tokenizer, tmp_path / "sft")
    run = _dpo_run(tmp_path, llama, str(ref), beta=0.25)
    assert reward_kind(run / "hf") == "implicit"
    assert kind_error(get_method("token-rm"), "implicit") is None
    assert "a sequence reward model" in kind_error(get_method("args-greedy"), "implicit")
    g = load_token_guide(run)
    assert isinstance(g, ImplicitReward) and g.beta == 0.25
    x = torch.tensor([[1, 5, 9, 3]])
    assert torch.equal(g.reference(input_ids=x).logits, llama.llm(input_ids=x).logits)
    assert torch.equal(g.policy(input_ids=x).logits, llama.arm(input_ids=x).logits)


@pytest.mark.parametrize(
    "base,match",
    [
        ("tiny:llama", "cannot be loaded; train DPO from a policy run"),
        ("runs/nowhere/sft", "DPO reference .* does not exist.*base_model"),
    ],
)
def test_a_dpo_run_without_its_reference_is_refused_in_one_line(tmp_path, llama, base, match):
    run = _dpo_run(tmp_path, llama, base)
    with pytest.raises(ModelPathError, match=match) as e:
        load_implicit_reward(run)
    assert "\n" not in str(e.value)


def test_predict_checks_a_dpo_guide_before_loading(tmp_path, llama):
    """Start-up checks read JSON only: the kind each method needs, and the reference's path."""
    from argsfw.config.compose import compose
    from argsfw.decoding import DecodeConfig
    from argsfw.errors import ConfigError
    from argsfw.models import save_hf
    from argsfw.predict import default_label
    from argsfw.prediction.preflight import check_reward_kind

    policy = save_hf(llama.llm, llama.tokenizer, tmp_path / "sft")
    run = _dpo_run(tmp_path, llama, str(policy))
    for method in ("treebon", "token-rm", "genarm"):
        check_reward_kind(DecodeConfig(method=method), str(policy), str(run / "hf"))
    with pytest.raises(ConfigError, match="needs a sequence reward model.*reward_kind 'implicit'"):
        check_reward_kind(DecodeConfig(method="cards"), str(policy), str(run / "hf"))
    with pytest.raises(ConfigError, match="treebon needs a DPO run.*reward_kind 'arm'"):
        marked = save_hf(llama.arm, llama.tokenizer, tmp_path / "arm")
        check_reward_kind(DecodeConfig(method="treebon"), str(policy), str(marked))
    lost = _dpo_run(tmp_path / "lost", llama, str(tmp_path / "gone"))
    with pytest.raises(ModelPathError, match="DPO reference"):
        check_reward_kind(DecodeConfig(method="treebon"), str(policy), str(lost / "hf"))
    job = compose(["recipe=tiny_args", "decode=token_rm", f"reward_model={run}"])
    assert default_label(job).startswith("token-rm(dpo) ")
