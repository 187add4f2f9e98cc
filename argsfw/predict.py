"""`python -m argsfw.predict recipe=NAME key=value ...`: decode prompts into a run directory.

One setting per run directory: ``outputs.jsonl`` (one record per prompt, in dataset order),
then a ``DONE`` marker (see `argsfw.callbacks.outputs` for the files and the resume design).
Re-running the same command resumes; a finished run's re-run is a no-op; outputs of other
settings in the same directory are refused. Settings fan out two ways, one output each:
Hydra multirun (``-m decode.weight=0,1 decode.topk=10,40``: ``<run_dir>/<overrides>/``) and
the original's config file (``decode.config_file=example.config``: ``<run_dir>/config_<i>/``).

Devices: ``trainer.devices=N`` runs Lightning's DDP predict loop, each rank decoding its shard
of the prompts in batches; ``trainer.num_nodes`` with torchrun or SLURM as Lightning runs them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from argsfw.callbacks.outputs import (
    SELECTION_KEYS,
    SETTINGS_KEY,
    OutputState,
    check_settings,
    clear_outputs,
    mark_done,
    merge_outputs,
    read_jsonl,
    read_state,
    write_legacy_json,
)
from argsfw.cli import run_entry
from argsfw.config.run_dir import RunDir
from argsfw.data.types import DataError
from argsfw.decoding.config import sampling_temperature
from argsfw.decoding.types import DecodeInputError
from argsfw.errors import ConfigError, UsageError

log = logging.getLogger("argsfw.predict")

# The original config file's keys -> DecodeConfig fields (mode is mapped with resolve_method).
_ORIGINAL_KEYS = {
    "rm_weight": "weight",
    "topk": "topk",
    "mode": "method",
    "sample_temp": "temperature",
    "chunk_size": "chunk_size",
    "max_new_token": "max_new_tokens",
}
_EXAMPLE = '{"rm_weight": 1.5, "topk": 10, "mode": "greedy", "sample_temp": null}'
# What each key's JSON value must be: a string "1.5" would pass and fail in the first batch.
_ORIGINAL_TYPES = {
    "rm_weight": "a finite number",
    "topk": "an integer",
    "mode": "a string",
    "sample_temp": "a finite number or null",
    "chunk_size": 'an integer or "auto"',
    "max_new_token": "an integer",
}


def _typed(key: str, value) -> bool:
    import math

    if isinstance(value, bool):
        return False
    if key in ("rm_weight", "sample_temp"):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if key == "mode":
        return isinstance(value, str)
    return isinstance(value, int) or (key == "chunk_size" and value == "auto")


class TokenizerMismatchError(UsageError):
    """Policy and reward model tokenizers differ and ``predict.strict_tokenizer`` is set."""


def is_global_zero() -> bool:
    """True on the global rank-0 process, from the launcher's environment (before Lightning runs).

    Lightning's subprocess launcher sets LOCAL_RANK/NODE_RANK, torchrun RANK, SLURM SLURM_PROCID.
    """
    names = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
    return all(os.environ.get(n, "0") in ("", "0") for n in names)


def read_config_file(path: str, base=None) -> list[dict]:
    """Decode settings of the original's config file: one JSON object per line.

    Returns one dict of `DecodeConfig` overrides per non-empty line, each value typed and, with
    `base` (the job's `DecodeConfig`), the line's settings range-checked on top of it.
    Raises `ConfigError` naming the file, line and key for a missing file, bad JSON, an unknown
    key, a value of the wrong type or out of range.
    """
    from argsfw.decoding.config import check_decode_settings
    from argsfw.decoding.types import resolve_method

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(
            f"decode.config_file {path!r} does not exist; name a file with one JSON object per line, e.g. {_EXAMPLE}"
        )
    out: list[dict] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{path}:{lineno}: not valid JSON ({e.msg}, column {e.colno}); expected e.g. {_EXAMPLE}"
            ) from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{lineno}: expected a JSON object like {_EXAMPLE}")
        unknown = sorted(set(obj) - set(_ORIGINAL_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}:{lineno}: unknown key(s) {unknown}; allowed: {', '.join(_ORIGINAL_KEYS)}"
            )
        for key, value in obj.items():
            if value is not None and not _typed(key, value):
                raise ConfigError(
                    f"{path}:{lineno}: {key}={json.dumps(value)} must be {_ORIGINAL_TYPES[key]}; "
                    f"fix the value, e.g. {_EXAMPLE}"
                )
        setting = {_ORIGINAL_KEYS[k]: v for k, v in obj.items() if v is not None}
        try:
            if "method" in setting:
                try:
                    setting["method"] = resolve_method(setting["method"], original_api=True)
                except DecodeInputError as exc:
                    raise DecodeInputError(f"mode={json.dumps(obj['mode'])}: {exc}") from None
            if base is not None:
                check_decode_settings(replace(base, config_file=None, **setting))
        except DecodeInputError as exc:
            # the engine names its own field (weight); the file's user knows the key (rm_weight)
            msg = str(exc)
            for key, name in _ORIGINAL_KEYS.items():
                if msg.startswith(f"{name} ") and key in obj:
                    msg = key + msg[len(name) :]
            raise ConfigError(f"{path}:{lineno}: {msg}") from None
        out.append(setting)
    if not out:
        raise ConfigError(
            f"decode.config_file {path!r} holds no settings (one JSON object per line, e.g. {_EXAMPLE})"
        )
    return out


def expand_settings(job, run: RunDir) -> list[tuple[object, RunDir]]:
    """``[(job, run)]``, or one ``(job, run_dir/config_<i>)`` per line of ``decode.config_file``."""
    if not job.decode.config_file:
        return [(job, run)]
    settings = read_config_file(job.decode.config_file, job.decode)
    jobs = []
    for i, s in enumerate(settings):
        decode = replace(job.decode, config_file=None, **s)
        jobs.append((replace(job, decode=decode), RunDir(run.path / f"config_{i}")))
    return jobs


def needs_reward_model(settings) -> bool:
    """True when the decode settings score candidates or samples with the reward model."""
    from argsfw.decoding.types import ARGS_METHODS, resolve_method

    method = resolve_method(settings.method)
    if method.startswith("genarm"):
        return float(settings.alpha) != 0.0
    weighted = method in ARGS_METHODS or method.startswith("token-rm")
    return method == "best-of-n" or (weighted and float(settings.weight) != 0.0)


def is_token_level(settings) -> bool:
    """True for the methods guided by a token-level RM (a causal LM), see `argsfw.decoding.token_level`."""
    from argsfw.decoding.types import TOKEN_LEVEL_METHODS, resolve_method

    return resolve_method(settings.method) in TOKEN_LEVEL_METHODS


def output_settings(job) -> dict:
    """The settings that decide a run's outputs (not batch size, devices or logging)."""
    from argsfw.decoding.types import resolve_method

    # why alpha only for genarm: other methods ignore it, and runs made before it existed keep
    # their fingerprint
    # scorer: every scorer gives the reference's rewards (verified by the probe)
    skip = {"batch_size", "config_file", "debug", "truncate_prompt", "scorer"}
    if not resolve_method(job.decode.method).startswith("genarm"):
        skip.add("alpha")
    decode = {k: v for k, v in asdict(job.decode).items() if k not in skip}
    decode["temperature"] = sampling_temperature(job.decode)  # None means the method's default
    # limit / offset / run_percent choose which prompts: a run of another selection must not
    # share the directory (a larger limit may continue it: see callbacks.outputs._comparable);
    # the carve, the chat rendering and the prompt cut change what each prompt is
    keys = ("source", "path", "eval_split", "fields", "seed", *SELECTION_KEYS)
    data = {k: getattr(job.data, k) for k in keys}
    rm = _norm_path(job.reward_model) if needs_reward_model(job.decode) else None
    return {
        "decode": decode,
        "data": data,
        "policy": _norm_path(job.policy),
        "reward_model": rm,
        "dtype": job.model.dtype,
        "precision": str(job.trainer.precision),
        "too_long": job.predict.too_long,
    }


def _norm_path(spec: str | None) -> str | None:
    return os.path.abspath(spec) if spec and os.path.exists(spec) else spec


def default_label(job) -> str:
    """``predict.label``, else the setting's `argsfw.decoding.types.setting_label`."""
    from argsfw.decoding.types import resolve_method, setting_label

    if job.predict.label:
        return job.predict.label
    d = job.decode
    m = resolve_method(d.method)
    if m == "genarm":
        return f"{m} alpha={d.alpha:g} T={sampling_temperature(d):g}"
    if m == "genarm-greedy":
        return f"{m} alpha={d.alpha:g}"
    label = setting_label(m, d.weight, d.topk, d.num_samples, d.gate_threshold)
    mode = _token_rm_mode(job.reward_model) if m.startswith("token-rm") else None
    # which token-level head guided it (FaRMA-style pairs or distilled), so rows do not collide
    return label.replace(m, f"{m}({mode})", 1) if mode else label


def _token_rm_mode(spec: str | None) -> str | None:
    """``token_rm_mode`` ("bt" | "distill") from a token-level RM run's meta.json, if there is one."""
    for meta in (Path(spec or "") / "meta.json", Path(spec or "") / "hf" / "meta.json"):
        try:
            mode = json.loads(meta.read_text()).get("token_rm_mode")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(mode, str):
            return mode
    return None


def _run(job, run: RunDir) -> None:
    for sub_job, sub_run in expand_settings(job, run):
        predict_one(sub_job, sub_run)


def predict_one(job, run: RunDir) -> dict | None:
    """Decode every prompt of `job` not yet in `run`, merge, mark done; returns the summary (rank 0)."""
    from argsfw.data.loading import load_prompts_with_stats

    if job.strategy.name == "deepspeed":
        raise ConfigError(
            "predict runs data-parallel (each rank holds whole models): use strategy=auto or strategy=ddp"
        )
    zero = is_global_zero()
    state = OutputState() if job.overwrite else read_state(run.path)
    current = output_settings(job)
    if not job.overwrite:
        check_settings(run.path, run.meta().get(SETTINGS_KEY), current, state)
    # a chat-format prompt is rendered by the policy's tokenizer: read it (no weights) first
    facts = check_inputs(job) if job.data.prompt_format == "chat" else None
    records, data_stats = load_prompts_with_stats(job.data, tokenizer=facts and facts.tokenizer)
    if not records:
        raise DataError(
            f"no prompts to decode: data.source={job.data.source} split {job.data.eval_split!r} "
            f"yields none ({data_stats}); check data.path, data.eval_split and data.limit/offset"
        )
    todo = [r for r in records if r.id not in state.done_ids]
    if not todo and state.done:
        log.info("%s is complete (%d prompts); nothing to do", run.outputs_path, len(records))
        return None
    facts = facts or check_inputs(job)
    if not state.records:  # a resumed run that already has outputs is not a run without any
        check_prompts_fit(job, facts, todo)
    run.path.mkdir(parents=True, exist_ok=True)
    if zero:
        run.claim(job)  # before the first write: lock, and no other stage's run
        if job.overwrite:
            clear_outputs(run.path)
        else:  # read again under the lock: a run that held it may have written since
            state = read_state(run.path)
            check_settings(run.path, run.meta().get(SETTINGS_KEY), current, state)
            todo = [r for r in records if r.id not in state.done_ids]
        # DONE says "every prompt is in": never true while this run adds (or a crash loses) some
        run.done_marker.unlink(missing_ok=True)
        run.start(job, "predict")
        run.update_meta(
            **{SETTINGS_KEY: current}, data=data_stats.as_dict(), label=default_label(job)
        )
    t0 = time.perf_counter()
    try:
        logger = _decode(job, run, records, facts.cross_tokenizer) if todo else None
        if not zero:
            return None
        summary = finish(job, run, records, state, time.perf_counter() - t0, logger)
    except BaseException:
        if zero:
            run.finish(status="failed")
        raise
    return summary


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

    needed = [("policy", job.policy, "sft", CAUSAL_LM)]
    if needs_reward_model(job.decode):
        rm_head = CAUSAL_LM if is_token_level(job.decode) else SEQ_CLS
        needed.append(("reward_model", job.reward_model, "rm", rm_head))
    configs, paths = {}, {}
    for key, spec, stage, head in needed:
        what = "policy" if key == "policy" else "reward model"
        if key == "reward_model" and is_token_level(job.decode):
            stage = "arm" if job.decode.method.startswith("genarm") else "token_rm_distill"
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
    from argsfw.decoding.types import resolve_method
    from argsfw.models.reward_kind import _read_json, is_causal_lm_config, kind_error, reward_kind

    method = resolve_method(settings.method)
    if not Path(rm_dir).is_dir():
        return  # a hub id: the engine checks the loaded model
    kind = reward_kind(rm_dir)
    if kind is None and not is_causal_lm_config(rm_dir):
        kind = "sequence"  # neither marked nor a causal LM: the sequence loader says what is wrong
    reason = kind_error(method, kind)
    if reason:
        raise ConfigError(f"{reason} (reward_model={rm_dir})")
    if kind in ("arm", "token", None) and Path(policy_dir).is_dir():
        v_llm = _read_json(Path(policy_dir) / "config.json").get("vocab_size")
        v_rm = _read_json(Path(rm_dir) / "config.json").get("vocab_size")
        if v_llm and v_rm and v_llm != v_rm:
            raise ConfigError(
                f"the token-level reward model {rm_dir} has a vocabulary of {v_rm} but the policy's is "
                f"{v_llm}: decode.method={method} reads the RM's head for the policy's own tokens, so "
                "both need one tokenizer: pass a token-level RM trained from the policy"
            )


def _producer_hint(key: str, spec: str | None, stage: str) -> str:
    from argsfw.config.compose import available_recipes

    name = Path(spec).name if spec else ""
    recipe = name if name in available_recipes() else f"tiny_{stage}"
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


def _trainer(job, run: RunDir, callbacks: list, logger):
    import lightning as L
    from lightning.pytorch.strategies import DDPStrategy

    from argsfw.devices import on_cpu, trainer_devices

    t = job.trainer
    devices, n = trainer_devices(t)  # every form trainer.devices takes (argsfw.devices)
    cpu = on_cpu(t.accelerator)
    multi = n > 1 or t.num_nodes > 1
    strategy = DDPStrategy(process_group_backend="gloo" if cpu else None) if multi else "auto"
    return L.Trainer(
        accelerator=t.accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        limit_predict_batches=t.limit_predict_batches,
        default_root_dir=str(run.path),
        enable_checkpointing=False,
    )


def _decode(job, run: RunDir, records, cross_tokenizer: bool):
    """Run Lightning's predict loop over the prompts still to do; returns the logger (or None)."""
    from argsfw.callbacks.writer import DecodeProgressBar, PartFileWriter, ThroughputLogger
    from argsfw.loggers import build_logger
    from argsfw.modules.decode import DecodeModule, DecodeSpec, PromptsDataModule

    spec = DecodeSpec(
        policy=job.policy,
        reward_model=job.reward_model,
        settings=job.decode,
        dtype=job.model.dtype,
        too_long=job.predict.too_long,
        use_rm=needs_reward_model(job.decode),
        token_level_rm=is_token_level(job.decode),
        cross_tokenizer=cross_tokenizer,
        label=default_label(job),
    )
    callbacks = [PartFileWriter(run.path), ThroughputLogger(job.predict.log_every_n_batches)]
    if job.trainer.enable_progress_bar:
        callbacks.append(DecodeProgressBar())
    logger = build_logger(job.logger, run.path, job.stage, hparams=output_settings(job))
    trainer = _trainer(job, run, callbacks, logger)
    dm = PromptsDataModule(records, run.path, job.decode.batch_size, job.data.num_workers)
    module = DecodeModule(spec)
    trainer.predict(module, datamodule=dm, return_predictions=False)
    if trainer.is_global_zero and module.scorer is not None:
        run.update_meta(scorer=module.scorer)  # which scorer read the RM (argsfw.decoding.probe)
    # why a barrier here and not in on_predict_end: a rank whose shard is empty skips the predict
    # loop (and its hooks) entirely; every rank returns from predict(), so all meet here.
    trainer.strategy.barrier("argsfw_predict_merge")
    return logger


def finish(job, run: RunDir, records, before: OutputState, seconds: float, logger=None) -> dict:
    """Merge the parts, write the legacy JSON and DONE (if every prompt is in), record the summary."""
    order = {r.id: i for i, r in enumerate(records)}
    merged = merge_outputs(run.path, order)
    out = read_jsonl(run.outputs_path)
    after = read_state(run.path)
    missing = [r.id for r in records if r.id not in after.done_ids]
    new = [r for r in out if r["id"] not in before.done_ids]
    tokens = sum(int(r.get("n_new_tokens", 0)) for r in new)
    # Decode time of this run: the busiest rank's summed batch shares (ranks work in parallel;
    # model loading and start-up are in seconds_this_run only).
    per_rank: dict[int, float] = {}
    for r in new:
        rank = int(r.get("stats", {}).get("rank", 0))
        per_rank[rank] = per_rank.get(rank, 0.0) + float(r.get("seconds", 0.0))
    busy = max(per_rank.values(), default=0.0)
    decoded_now = len(after.done_ids - before.done_ids)
    already = sum(1 for r in records if r.id in before.done_ids)
    summary = {
        **merged.as_dict(),
        "prompts": len(records),
        "already_done_at_start": already,
        "decoded_this_run": decoded_now,
        "missing": len(missing),
        "seconds_this_run": round(seconds, 3),
        "decode_seconds": round(busy, 3),
        "ranks": len(per_rank),
        "prompts_per_second": len(new) / busy if busy > 0 else 0.0,
        "tokens_per_second": tokens / busy if busy > 0 else 0.0,
    }
    if not out and merged.skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in merged.skipped.items()) or "none written"
        raise DecodeInputError(
            f"no prompt was decoded: all {len(records)} were skipped ({reasons}; see "
            f"{run.path / 'skipped.jsonl'}); lower decode.max_new_tokens or set predict.too_long=truncate"
        )
    if job.predict.legacy_json:
        write_legacy_json(run.path, default_label(job))
    if missing:
        run.finish(status="partial", predict=summary)
        log.warning(
            "%d of %d prompts have no output yet (e.g. limit_predict_batches); re-run to continue",
            len(missing),
            len(records),
        )
    else:
        mark_done(run.path)
        run.finish(status="completed", predict=summary)
    log.info(
        "predict: %d records in %s (%d now, %d before, %s skipped, %d truncated) in %.1f s; decoding: %.2f prompts/s, %.1f tokens/s",
        merged.written,
        run.outputs_path,
        len(new),
        summary["already_done_at_start"],
        merged.skipped or "none",
        merged.truncated,
        seconds,
        summary["prompts_per_second"],
        summary["tokens_per_second"],
    )
    _log_summary(logger, summary, out, job.logger.log_samples)
    return summary


def _log_summary(logger, summary: dict, records: list[dict], n_samples: int) -> None:
    from argsfw.callbacks.writer import log_samples_table

    if logger is None:
        return
    logger.log_metrics(
        {f"predict/{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))}
    )
    log_samples_table(logger, records, n_samples)
    logger.finalize("success")
    if (
        type(logger).__name__ == "WandbLogger"
    ):  # why: the next run of a sweep must not reuse this W&B run
        import wandb

        wandb.finish()


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage errors)."""
    return run_entry("predict", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
