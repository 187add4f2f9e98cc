"""Predict's start-up checks: everything that can be refused before a model's weights load.

Paths (naming the command that makes a missing one), the head each checkpoint was saved for,
the kind of guide model the method needs, readable weights, tokenizers, the decode settings
against the policy's vocabulary and the models' context, and whether any prompt fits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from argsfw.decoding.registry import get_method
from argsfw.decoding.types import DecodeInputError, RewardKind
from argsfw.errors import ConfigError, UsageError
from argsfw.prediction.settings import is_token_level, needs_reward_model

log = logging.getLogger("argsfw.predict")


class TokenizerMismatchError(UsageError):
    """Policy and reward model tokenizers differ and ``predict.strict_tokenizer`` is set."""


@dataclass
class ModelFacts:
    """What predict reads from the models' configs and tokenizers before any weight loads."""

    tokenizer: object  # the policy's tokenizer
    vocab: int | None  # rows of the policy's output layer (config.vocab_size)
    llm_ctx: int | None  # the policy's context length
    rm_ctx: int | None  # the reward model's (None without an RM, or when tokenizers differ)
    cross_tokenizer: bool  # the RM's tokenizer differs: scored through the cross-tokenizer path


def check_inputs(job) -> ModelFacts:
    """Fail fast, in one line, on unusable model inputs and settings, before Lightning starts.

    Paths (naming the command that makes a missing one), the head each checkpoint was saved for,
    readable weights, tokenizers, and the decode settings against the policy's vocabulary and
    the models' context. Raises `ModelPathError`, `DecodeInputError` or `ConfigError` (exit 2).
    """
    from transformers import AutoConfig

    from argsfw.decoding.config import check_decode_settings
    from argsfw.decoding.engine import rm_context_length
    from argsfw.decoding.policy import context_length
    from argsfw.models import (
        CAUSAL_LM,
        SEQ_CLS,
        ModelFileError,
        ModelPathError,
        check_head,
        check_weights,
        load_tokenizer,
        resolve_model_path,
    )
    from argsfw.stages import POLICY, maker

    needed = [("policy", job.policy, maker(POLICY), CAUSAL_LM)]
    if needs_reward_model(job.decode):
        rm_head = CAUSAL_LM if is_token_level(job.decode) else SEQ_CLS
        guide = maker(f"reward_model:{get_method(job.decode.method).needs}")
        needed.append(("reward_model", job.reward_model, guide, rm_head))
    configs, paths = {}, {}
    for key, spec, stage, head in needed:
        what = "policy" if key == "policy" else "reward model"
        try:
            path = resolve_model_path(spec or "", what)
        except ModelFileError:
            raise  # a broken file in an existing model: no command to make one
        except ModelPathError as exc:
            raise ModelPathError(f"{exc}; {_producer_hint(key, spec, stage)}") from None
        paths[key] = path
        if key == "reward_model":  # the kind the method needs first: its message names the fix
            check_reward_kind(job.decode, paths["policy"], path)
        check_head(path, what, head)
        check_weights(path, what)
        configs[key] = AutoConfig.from_pretrained(path)
    policy = configs["policy"]
    vocab = getattr(policy, "vocab_size", None)
    check_decode_settings(job.decode, vocab if isinstance(vocab, int) else None, prefix="decode.")
    tokenizer = load_tokenizer(job.policy, "policy")
    cross = _check_tokenizers(job, tokenizer)
    facts = ModelFacts(
        tokenizer=tokenizer,
        vocab=vocab,
        llm_ctx=context_length(policy),
        rm_ctx=rm_context_length(configs["reward_model"])
        if "reward_model" in configs and not cross
        else None,
        cross_tokenizer=cross,
    )
    for name, ctx in (("policy", facts.llm_ctx), ("reward model", facts.rm_ctx)):
        if ctx is not None and job.decode.max_new_tokens >= ctx:
            raise ConfigError(
                f"decode.max_new_tokens={job.decode.max_new_tokens} leaves no room for a prompt in "
                f"the {name}'s context of {ctx} tokens; set decode.max_new_tokens below {ctx}"
            )
    return facts


def check_prompts_fit(job, facts: ModelFacts, todo) -> None:
    """Refuse a run in which no prompt can be decoded (every one too long, or empty).

    With ``predict.too_long=skip`` a prompt that does not fit a context with
    ``decode.max_new_tokens`` is skipped; when all are, the run would end with no output.
    Raises `DecodeInputError` with the counts and the fixes.
    """
    if not todo:
        return
    if all(not r.prompt.strip() for r in todo):
        # one empty prompt is generation from scratch (the original README's example); all of
        # them empty is a data mapping that reads the wrong field
        raise DecodeInputError(
            f"all {len(todo)} prompts are empty: check data.source / data.fields.prompt "
            f"(the field read as the prompt) and data.path"
        )
    ids = facts.tokenizer([r.prompt for r in todo]).input_ids
    limits = [c for c in (facts.llm_ctx, facts.rm_ctx) if c is not None]
    room = min(limits) - job.decode.max_new_tokens if limits else None
    empty = sum(1 for row in ids if not row)
    too_long = 0
    if job.predict.too_long == "skip" and room is not None:
        too_long = sum(1 for row in ids if row and len(row) > room)
    if empty + too_long < len(todo):
        return
    if empty == len(todo):
        raise DecodeInputError(
            f"none of the {len(todo)} prompts can be decoded: every one tokenizes to no tokens; "
            "check the prompt field of the data (data.fields.prompt) or the tokenizer"
        )
    raise DecodeInputError(
        f"none of the {len(todo)} prompts can be decoded: {too_long} are longer than the "
        f"{room} tokens the context leaves with decode.max_new_tokens={job.decode.max_new_tokens}"
        + (f" and {empty} are empty" if empty else "")
        + "; lower decode.max_new_tokens or set predict.too_long=truncate"
    )


def check_reward_kind(settings, policy_dir: str, rm_dir: str) -> None:
    """Refuse a reward model of the wrong kind for the method, or a token-level RM with another vocabulary.

    Reads config.json / meta.json only (no model loads). Raises `ConfigError` (exit code 2).
    """
    from argsfw.models.reward_kind import _read_json, is_causal_lm_config, kind_error, reward_kind

    method = get_method(settings.method)
    if not Path(rm_dir).is_dir():
        return  # a hub id: the engine checks the loaded model
    kind = reward_kind(rm_dir)
    if kind is None and not is_causal_lm_config(rm_dir):
        kind = "sequence"  # neither marked nor a causal LM: the sequence loader says what is wrong
    reason = kind_error(method, kind)
    if reason:
        raise ConfigError(f"{reason} (reward_model={rm_dir})")
    if kind == RewardKind.IMPLICIT:
        from argsfw.decoding.implicit import reference_path

        reference_path(rm_dir)  # the DPO run's reference must load too (ModelPathError, exit 2)
    if (kind is None or RewardKind(kind).causal_lm) and Path(policy_dir).is_dir():
        v_llm = _read_json(Path(policy_dir) / "config.json").get("vocab_size")
        v_rm = _read_json(Path(rm_dir) / "config.json").get("vocab_size")
        if v_llm and v_rm and v_llm != v_rm:
            raise ConfigError(
                f"the token-level reward model {rm_dir} has a vocabulary of {v_rm} but the policy's is "
                f"{v_llm}: decode.method={method.name} reads the RM's head for the policy's own tokens, so "
                "both need one tokenizer: pass a token-level RM trained from the policy"
            )


def _producer_hint(key: str, spec: str | None, stage) -> str:
    """How to make a missing input: the recipe its path is named after, else the stage that
    makes it (`argsfw.stages.maker`) and its first recipe (``tiny_<stage>`` when shipped)."""
    from argsfw.config.compose import available_recipes, recipes_by_stage

    name = Path(spec).name if spec else ""
    own = recipes_by_stage().get(stage.name, []) if stage is not None else []
    tiny = f"tiny_{stage.name}" if stage is not None else ""
    recipe = (
        name if name in available_recipes() else (tiny if tiny in own else (own or ["NAME"])[0])
    )
    where = (
        "" if spec and Path(spec) == Path("runs") / recipe else f" run_dir={spec}" if spec else ""
    )
    return f"make it with `python -m argsfw.fit recipe={recipe}{where}` or pass {key}=<HF dir | run dir | hub id>"


def _check_tokenizers(job, policy_tokenizer) -> bool:
    """True when the RM needs the cross-tokenizer scorer; raises `TokenizerMismatchError` if strict."""
    from argsfw.models import check_tokenizer_compat, load_tokenizer

    if not needs_reward_model(job.decode):
        return False
    compat = check_tokenizer_compat(
        policy_tokenizer, load_tokenizer(job.reward_model, "reward model")
    )
    if compat.same:
        return False
    if is_token_level(job.decode):
        raise TokenizerMismatchError(
            f"policy and token-level reward model {compat}: decode.method={job.decode.method} "
            "needs one tokenizer for both"
        )
    if job.predict.strict_tokenizer:
        raise TokenizerMismatchError(
            f"policy and reward model {compat} (predict.strict_tokenizer=true)"
        )
    log.warning(
        "policy and reward model %s: scoring through the cross-tokenizer scorer (slower); "
        "predict.strict_tokenizer=true makes this an error",
        compat,
    )
    return True
