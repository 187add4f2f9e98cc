"""`run_evaluation`: every metric over a list of outputs files, written as one report.

This is the library behind ``python -m argsfw.evaluate``; the CLI only parses arguments,
calls `run_evaluation` and prints `EvalInputError` messages (exit 2).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from argsfw.errors import UsageError
from argsfw.eval.config import METRICS, EvalConfig
from argsfw.eval.inputs import EvalInput, cut_at_turn, load_inputs
from argsfw.eval.judge import JudgeClient, check_judge, judge_all, make_client
from argsfw.eval.judge_clients import check_endpoint
from argsfw.eval.report import (
    flat_metrics,
    log_wandb,
    mark_report_done,
    slug,
    staged_report,
    start_report,
    write_report,
)
from argsfw.eval.stats import cost_metrics, oracle_metrics, record_cost

log = logging.getLogger(__name__)


def _config_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data (a dataclass or an OmegaConf DictConfig). Holds no secret:
    the judge section names an env var / key file, never a key."""
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _progress(
    what: str, i: int, n: int, label: str, answers: int, started: float, cached: int = 0
) -> None:
    """One line per input and pass: an evaluation of many rows reads for minutes."""
    log.info(
        "%s: [%d/%d] %s, %d answers%s in %.1f s",
        what, i, n, label, answers, f" ({cached} from the score cache)" if cached else "",
        time.perf_counter() - started,
    )  # fmt: skip


def _reward(
    inputs: Sequence[EvalInput],
    cfg: EvalConfig,
    spec: Any,
    tok_spec: Any,
    what: str = "reward",
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Reward metrics per input label (and per-record scores under ``"_scores"``); with
    `cache_dir` the scores an earlier evaluation there computed are reused."""
    from argsfw.eval.reward import load_reward, reward_texts, score_texts
    from argsfw.eval.score_cache import ScoreCache

    model, tokenizer = load_reward(spec, tok_spec, dtype=cfg.reward_dtype, device=cfg.device)
    cache = ScoreCache.for_model(cache_dir, model, cfg.reward_dtype)
    out = {}
    for i, inp in enumerate(inputs, 1):
        started = time.perf_counter()
        texts = reward_texts(inp.records, cfg.cut_at_human, tokenizer, cfg.max_prompt_tokens)
        res = score_texts(
            texts, model, tokenizer, cfg.reward_batch_size, cfg.max_reward_tokens, cache
        )
        _progress(f"{what} {spec}", i, len(inputs), inp.label, len(texts), started, res.n_cached)
        out[inp.label] = {
            "reward": res.mean,
            "reward_se": res.stderr,
            "reward_scored": res.n_scored,
            "reward_skipped": res.n_skipped,
            "reward_truncated": res.n_truncated,
            "_scores": res.scores,
        }
    return out


def _diversity_coherence(
    inputs: Sequence[EvalInput], cfg: EvalConfig, metrics: set[str]
) -> dict[str, Any]:
    """Diversity and/or coherence per input label, on continuations cut at the next turn."""
    from argsfw.eval.diversity import diversity

    embedder = None
    if "coherence" in metrics:
        from argsfw.eval.coherence import load_embedder

        embedder = load_embedder(
            cfg.coherence_model,
            cfg.coherence_pooling,
            cfg.coherence_max_tokens,
            cfg.device,
            cfg.coherence_batch_size,
        )
    what = " and ".join(k for k in ("diversity", "coherence") if k in metrics)
    out: dict[str, Any] = {}
    for i, inp in enumerate(inputs, 1):
        started = time.perf_counter()
        conts = [cut_at_turn(r.continuation) for r in inp.records]
        m: dict[str, Any] = {}
        if "diversity" in metrics:
            d = diversity(conts, cfg.diversity_plus_one)
            m.update(
                diversity=d.diversity,
                rep_2=d.rep_2,
                rep_3=d.rep_3,
                rep_4=d.rep_4,
                _diversity=d.per_response,
            )
            m["_tokenizer"] = d.tokenizer
        if embedder is not None:
            from argsfw.eval.coherence import coherence

            m["coherence"], m["_coherence"] = coherence(
                [r.prompt for r in inp.records], conts, embedder
            )
            m["_embedder"] = f"{embedder.name} ({embedder.pooling} pooling)"
        out[inp.label] = m
        _progress(what, i, len(inputs), inp.label, len(conts), started)
    return out


def _compute(
    inputs: Sequence[EvalInput],
    cfg: EvalConfig,
    metrics: set[str],
    reward_model: Any,
    reward_tokenizer: Any,
    oracle: Callable[[str, str], float] | None,
    notes: list[str],
    cache_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """All per-input metrics, keyed by label; private per-record lists start with ``_``."""
    per: dict[str, dict[str, Any]] = {inp.label: {} for inp in inputs}
    if "reward" in metrics:
        if reward_model is None:
            notes.append("reward skipped: no reward model given")
        else:
            for label, m in _reward(
                inputs, cfg, reward_model, reward_tokenizer, cache_dir=cache_dir
            ).items():
                per[label].update(m)
    if cfg.judge_reward_model:
        judge = _reward(inputs, cfg, cfg.judge_reward_model, None, "judge", cache_dir)
        for label, m in judge.items():
            per[label].update(
                judge_reward=m["reward"], judge_reward_se=m["reward_se"], _judge=m["_scores"]
            )
    if metrics & {"diversity", "coherence"}:
        for label, m in _diversity_coherence(inputs, cfg, metrics).items():
            per[label].update(m)
    if "oracle" in metrics and oracle is None:
        notes.append("oracle skipped: no oracle scorer given (it exists for the tiny corpus)")
    for inp in inputs:
        if "cost" in metrics:
            per[inp.label].update(cost_metrics(inp.records))
        if oracle is not None:
            per[inp.label].update(oracle_metrics(inp.records, oracle))
    return per


def _write_records(
    inputs: Sequence[EvalInput], per: dict[str, dict[str, Any]], run_dir: Path
) -> Path:
    """Per-record scores, one JSONL line per record: label, index, id, cost per generated
    token (`record_cost`), reward, diversity, coherence."""
    import json

    path = run_dir / "records.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for inp in inputs:
            m = per[inp.label]
            for i, rec in enumerate(inp.records):
                row = {"input": inp.label, "index": i, "id": rec.id, **record_cost(rec)}
                for key, name in (
                    ("_scores", "reward"),
                    ("_judge", "judge_reward"),
                    ("_diversity", "diversity"),
                    ("_coherence", "coherence"),
                ):
                    if key in m:
                        row[name] = m[key][i]
                f.write(json.dumps(row, default=str) + "\n")
    return path


def _write_judge_details(results: Sequence[Any], run_dir: Path) -> None:
    """One JSONL per judged pair under ``judge/``: prompt, both orders' scores, replies, outcome."""
    import json

    (run_dir / "judge").mkdir(exist_ok=True)
    for res in results:
        with (run_dir / "judge" / f"{slug(res.a)}__vs__{slug(res.b)}.jsonl").open(
            "w", encoding="utf-8"
        ) as f:
            for d in res.details:
                f.write(json.dumps(d) + "\n")


def run_evaluation(
    outputs: Sequence[str | os.PathLike],
    config: EvalConfig | None = None,
    reward_model: str | os.PathLike | None = None,
    run_dir: str | os.PathLike = "eval_run",
    *,
    reward_tokenizer: str | os.PathLike | None = None,
    oracle: Callable[[str, str], float] | None = None,
    judge_client: JudgeClient | None = None,
    log_fn: Callable[[dict[str, float]], None] | None = None,
    wandb_run: Any = None,
    pairs: tuple[Any, str] | None = None,
) -> dict[str, Any]:
    """Evaluate outputs files and write ``report.json``, ``report.md``, ``records.jsonl``,
    ``plots/*.png`` (and ``judge/*.jsonl``) into `run_dir`, then its ``DONE`` marker
    (`argsfw.eval.report.report_complete`). The files are written into a hidden folder and
    moved in together (`argsfw.eval.report.staged_report`): a killed evaluation leaves none.

    Args:
        outputs: predict JSONL files, predict run directories, the original's JSON lists, or
            ``name=path`` to set a label.
        config: which metrics and how (`EvalConfig` or its OmegaConf form); default `EvalConfig()`.
        reward_model: HF directory, argsfw run directory or hub id; reward is skipped (noted
            in the report) without one.
        reward_tokenizer: tokenizer for the RM if not its own (the original used the LLM's).
        oracle: optional ``oracle(prompt, continuation) -> float``; its mean is reported.
        judge_client: overrides the client built from ``config.judge`` (tests, custom judges).
        log_fn: called once with flat ``{"eval/<label>/<metric>": value}`` metrics.
        wandb_run: a W&B run to log the table, plots and summary metrics to.
        pairs: ``(DataConfig, split)`` of held-out preference pairs for the ``instruments``
            metric (each RM's accuracy on them beside the length rule).

    Returns:
        The report dict as written to ``report.json``; ``report["files"]`` lists what was written.

    Raises:
        EvalInputError: an input is missing or malformed (one line naming file and line).
        ValueError: an unknown metric name.
        UsageError: ``eval.length_baseline`` names no row.
        argsfw.eval.judge.JudgeError: fewer than two inputs, an unknown baseline, a remote
            endpoint without a key (all before anything loads), or a refused request.
        argsfw.eval.judge.JudgeUnreachableError: the judge endpoint stopped answering.
        argsfw.models.ModelPathError: the reward or coherence model path is not usable.
    """
    cfg = config if config is not None else EvalConfig()
    metrics = set(cfg.metrics) | ({"judge"} if cfg.judge.enabled else set())
    unknown = metrics - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {list(METRICS)}")
    inputs = load_inputs(list(outputs))
    labels = [inp.label for inp in inputs]
    if cfg.length_baseline and cfg.length_baseline not in labels:  # before any model loads
        raise UsageError(
            f"eval.length_baseline={cfg.length_baseline!r} is not one of the rows {labels}; "
            "name one of them, or null"
        )
    if "judge" in metrics:  # why: before any model loads, so a missing key costs nothing
        check_judge(cfg.judge, inputs, need_key=judge_client is None)
        if judge_client is None and cfg.judge.kind == "openai":
            check_endpoint(cfg.judge)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    start_report(run)
    notes: list[str] = []
    per = _compute(inputs, cfg, metrics, reward_model, reward_tokenizer, oracle, notes, run)
    judge_results = []
    if "judge" in metrics:
        client = judge_client or make_client(cfg.judge, cfg.device)
        judge_results = judge_all(inputs, cfg.judge, client)
    instruments = _instruments(inputs, per, cfg, metrics, reward_model, pairs, notes, run)
    report = _assemble(inputs, per, cfg, reward_model, judge_results, notes)
    report["instruments"] = instruments
    with staged_report(run) as staging:  # every file appears at once, report.json last
        if "judge" in metrics:
            _write_judge_details(judge_results, staging)
        files = write_report(report, staging)
        files["records"] = _write_records(inputs, per, staging)
    files = {k: run / Path(v).relative_to(staging) for k, v in files.items()}
    report["files"] = {k: str(v) for k, v in files.items()}
    flat = flat_metrics(report)
    if log_fn is not None:
        log_fn(flat)
    if wandb_run is not None:
        log_wandb(wandb_run, report, files)
    mark_report_done(run)
    return report


def _instruments(
    inputs, per, cfg, metrics, reward_model, pairs, notes, cache_dir=None
) -> dict[str, Any]:
    """The instruments section: RM accuracy beside the length rule, length-adjusted gains."""
    from argsfw.eval.instruments import length_adjusted_gains, rm_pair_accuracy

    out: dict[str, Any] = {}
    if "instruments" in metrics:
        specs = {"guide": reward_model, "judge": cfg.judge_reward_model}
        specs = {k: v for k, v in specs.items() if v}
        if pairs is None or not specs:
            notes.append("instruments skipped: they need held-out pairs (data) and a reward model")
        else:
            out["rm_accuracy"] = rm_pair_accuracy(pairs[0], pairs[1], specs, cfg, cache_dir)
    if cfg.length_baseline:
        out["length_baseline"] = cfg.length_baseline
        out["gain_of"] = None
        for label, gains in length_adjusted_gains(inputs, per, cfg.length_baseline).items():
            out["gain_of"] = gains.pop("gain_of")
            per[label].update({f"answer_{k}" if k == "length" else k: v for k, v in gains.items()})
    return out


def _assemble(inputs, per, cfg, reward_model, judge_results, notes) -> dict[str, Any]:
    """The JSON-ready report: setup, one entry per input (public metrics only), judge summaries."""
    from argsfw import __version__

    entries = []
    for inp in inputs:
        m = per[inp.label]
        entries.append(
            {
                "label": inp.label,
                "path": str(inp.path),
                "method": inp.method,
                "settings": inp.settings,
                "n_records": len(inp.records),
                "complete": inp.complete,
                "warnings": inp.warnings,
                "metrics": {k: v for k, v in m.items() if not k.startswith("_")},
            }
        )
    first = per[inputs[0].label]
    return {
        "argsfw_version": __version__,
        "reward_model": None if reward_model is None else str(reward_model),
        "diversity_tokenizer": first.get("_tokenizer"),
        "coherence_model": first.get("_embedder"),
        "config": _config_dict(cfg),
        "inputs": entries,
        "judge": [r.summary() for r in judge_results],
        "notes": notes,
    }
