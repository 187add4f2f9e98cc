"""Model and tokenizer set-up shared by the fit stages, their input checks and their HF export.

A stage's base model comes from, in order: ``policy=`` (an HF dir, an argsfw run dir or a hub
id), ``model.base``, else the tiny model built from ``model.tiny`` with a BPE tokenizer trained
on the embedded tiny corpus. The tiny tokenizer depends on nothing but ``model.tiny.vocab_size``
so ``tiny_sft`` and ``tiny_rm`` always share one vocabulary.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from argsfw.config.schema import JobConfig
from argsfw.errors import UsageError

log = logging.getLogger(__name__)

TINY_TOKENIZER_SEED = 0  # the corpus seed the tiny tokenizer is trained on: fixed, see module doc


@lru_cache(maxsize=2)
def tiny_tokenizer(vocab_size: int):
    """The tiny BPE tokenizer: trained on the tiny corpus texts of seed 0, deterministic."""
    from argsfw.data import tiny_corpus_texts
    from argsfw.models import train_tokenizer

    return train_tokenizer(tiny_corpus_texts(seed=TINY_TOKENIZER_SEED), vocab_size=vocab_size)


def tiny_spec(job: JobConfig):
    """`TinySpec` of ``model.tiny``."""
    from argsfw.models import TinySpec

    # TinyModelConfig is TinySpec plus the tokenizer's vocab_size: copy the shared fields.
    return TinySpec(
        **{f.name: getattr(job.model.tiny, f.name) for f in dataclasses.fields(TinySpec)}
    )


def base_source(job: JobConfig) -> str | None:
    """The model input a stage starts from: ``policy=``, else ``model.base``, else None (tiny)."""
    return job.policy or job.model.base


def load_tokenizer_for(job: JobConfig, source: str | None):
    """The stage's tokenizer: ``model.tokenizer``, else the source model's, else the tiny one.

    A tokenizer without a pad token gets its EOS as pad (logged): batches are padded.
    """
    from argsfw.models import load_tokenizer

    spec = job.model.tokenizer or source
    tok = load_tokenizer(spec, "tokenizer") if spec else tiny_tokenizer(job.model.tiny.vocab_size)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise UsageError(
                f"tokenizer of {spec!r} has neither a pad nor an EOS token; set model.tokenizer="
            )
        tok.pad_token = tok.eos_token
        log.warning("tokenizer %s has no pad token; using its EOS %r as pad", spec, tok.eos_token)
    return tok


def _from_pretrained(auto_cls, source: str, job: JobConfig, what: str, **kwargs):
    from argsfw.models import load_checked

    return load_checked(auto_cls, source, what, job.model.dtype, **kwargs)


def check_fit_inputs(job: JobConfig) -> None:
    """Check a fit stage's model inputs before anything is written or loaded.

    Paths, the head each checkpoint was saved for, readable weights and a tokenizer.
    Raises `ModelPathError` or `UsageError` (naming the command that makes a missing input).
    """
    from argsfw.models import CAUSAL_LM, SEQ_CLS, check_head, check_tokenizer_files, check_weights
    from argsfw.stages import find_stage

    stage = find_stage(job.stage)
    if stage is not None and stage.model_inputs is not None:
        inputs = stage.model_inputs(job)  # the stage's own (raises for a missing one)
    elif stage is not None and stage.reads_reward_model:
        inputs = [("policy", job.policy, CAUSAL_LM), ("reward model", job.reward_model, SEQ_CLS)]
    else:
        source = base_source(job)
        inputs = [("policy" if source == job.policy else "model.base", source, CAUSAL_LM)]
    for what, spec, head in inputs:
        if not spec:
            continue
        if head is not None:
            check_head(spec, what, head)
        check_weights(spec, what)
        if not job.model.tokenizer:
            check_tokenizer_files(spec, what)
    if job.model.tokenizer:
        check_tokenizer_files(job.model.tokenizer, "model.tokenizer")


def _finish(model, tokenizer, job: JobConfig, task: str):
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
        log.warning("model config had no pad_token_id; set to %s", tokenizer.pad_token_id)
    if job.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if job.model.lora.enabled:
        model = _with_lora(model, job, task)
    if job.model.train_top_layers:
        from argsfw.modules._top_layers import freeze_below_top

        try:
            trainable, total = freeze_below_top(model, job.model.train_top_layers)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        log.info(
            "model.train_top_layers=%d: %d of %d parameters trainable",
            job.model.train_top_layers,
            trainable,
            total,
        )
    return model


def _with_lora(model, job: JobConfig, task: str):
    from peft import LoraConfig, get_peft_model

    lc = job.model.lora
    config = LoraConfig(
        task_type=task,
        r=lc.r,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=list(lc.target_modules),
    )
    model = get_peft_model(model, config)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d: %d of %d parameters trainable", lc.r, trainable, total)
    return model


def build_causal_lm(job: JobConfig) -> tuple[Any, Any, dict]:
    """(model, tokenizer, meta) of the SFT policy to train. Raises `ModelPathError` for bad paths."""
    from transformers import AutoModelForCausalLM

    from argsfw.models import build_tiny_policy

    source = base_source(job)
    tok = load_tokenizer_for(job, source)
    if source:
        model = _from_pretrained(AutoModelForCausalLM, source, job, "policy")
    else:
        model = build_tiny_policy(tok, tiny_spec(job), seed=job.seed)
    model.train()
    meta = _meta(job, source or f"tiny:{job.model.tiny.arch}", tok)
    return _finish(model, tok, job, "CAUSAL_LM"), tok, meta


def build_reward_model(job: JobConfig) -> tuple[Any, Any, dict]:
    """(model, tokenizer, meta) of the reward model: ``num_labels=1`` sequence classifier.

    With ``rm.init_from_policy`` the body comes from ``policy=`` (the SFT model) and the scalar
    head is new. Raises `UsageError` when ``rm.init_from_policy`` is set without ``policy=``.
    """
    from transformers import AutoModelForSequenceClassification

    from argsfw.models import build_tiny_reward_model

    if job.rm.init_from_policy and not job.policy:
        raise UsageError(
            "rm.init_from_policy=true needs policy=<SFT run dir>; produce one with "
            "python -m argsfw.fit recipe=tiny_sft (or your *_sft recipe)"
        )
    source = job.policy if job.rm.init_from_policy else job.model.base
    tok = load_tokenizer_for(job, source)
    new_head: list[str] = []
    if source:
        model, info = _from_pretrained(
            AutoModelForSequenceClassification,
            source,
            job,
            "reward model",
            num_labels=1,
            new_head=True,
            return_info=True,
        )
        new_head = _new_head_keys(model, source, info.get("missing_keys", []))
    else:
        model = build_tiny_reward_model(tok, tiny_spec(job), seed=job.seed)
    model.train()
    meta = {**_meta(job, source or f"tiny:{job.model.tiny.arch}", tok), "new_head": new_head}
    return _finish(model, tok, job, "SEQ_CLS"), tok, meta


def _new_head_keys(model, source: str, missing) -> list[str]:
    """The RM stage's base init: a scalar head may be new (trained here); any other missing weight is an error.

    Why explicit: a base model (an SFT policy, a pretrained encoder such as MiniLM) has no
    reward head, so ``from_pretrained`` initialises it; that is intended for this stage only.
    """
    missing = sorted(missing)
    from argsfw.models.loading import HEAD_MODULES

    body = [k for k in missing if k.split(".")[0] not in HEAD_MODULES]
    if body:
        raise UsageError(
            f"reward model base {source!r} lacks weights of {type(model).__name__}'s body "
            f"({', '.join(body[:3])}...): point model.base/policy at a model of that architecture"
        )
    if missing:
        log.info(
            "reward model base %s: new scalar head %s initialised, trained in this stage",
            source,
            missing,
        )
    return missing


def _meta(job: JobConfig, base: str, tok) -> dict:
    return {
        "base_model": base,
        "tokenizer": job.model.tokenizer or base,
        "vocab_size": len(tok),
        "max_length": job.data.max_length,
        "max_prompt_length": job.data.max_prompt_length,
        "lora": job.model.lora.enabled,
    }


def save_model_dir(model, tokenizer, out_dir: Path, reward_kind=None) -> None:
    """Save `model` (LoRA merged in) and `tokenizer` as a plain HF directory (safetensors); a
    `RewardKind` given is marked in its config.json (``argsfw_reward_kind``)."""
    from peft import PeftModel

    if reward_kind is not None:
        from argsfw.models.reward_kind import mark_reward_kind

        mark_reward_kind(model, reward_kind)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()  # why: vanilla transformers must load it without peft
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def unwrap(model) -> torch.nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
