"""The end of a predict run: merge the ranks' parts, mark it DONE when every prompt is in, and
record and log the summary (throughput of this run, what was skipped or is still missing)."""

from __future__ import annotations

import logging

from argsfw.callbacks.outputs import (
    OutputState,
    mark_done,
    merge_outputs,
    read_jsonl,
    read_state,
    write_legacy_json,
)
from argsfw.config.run_dir import RunDir
from argsfw.decoding.types import DecodeInputError
from argsfw.prediction.settings import default_label

log = logging.getLogger("argsfw.predict")


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
        **compute_summary(out),
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


def compute_summary(records: list[dict]) -> dict:
    """Forward FLOPs per generated token of each model and their sum (``llm_flops_per_token``,
    ``rm_flops_per_token``, ``flops_per_token``), and each model's re-read fraction (positions
    an earlier forward of the same prompt had computed / positions computed; None when it
    computed none), over ``records`` (outputs.jsonl rows)."""
    tokens = sum(int(r.get("n_new_tokens", 0)) for r in records)
    total = {
        k: 0.0
        for k in ("llm_flops", "rm_flops", "llm_tokens", "rm_tokens", "llm_reread", "rm_reread")
    }
    for r in records:
        for k in total:
            total[k] += float(r.get("stats", {}).get(k) or 0)
    out = {
        f"{m}_flops_per_token": total[f"{m}_flops"] / tokens if tokens else None
        for m in ("llm", "rm")
    }
    out["flops_per_token"] = (total["llm_flops"] + total["rm_flops"]) / tokens if tokens else None
    for m in ("llm", "rm"):
        n = total[f"{m}_tokens"]
        out[f"{m}_reread_fraction"] = total[f"{m}_reread"] / n if n else None
    return out


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
