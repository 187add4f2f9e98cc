"""Writing the evaluation report: ``report.json``, ``report.md``, ``plots/*.png`` and W&B.

Nothing secret reaches these files: the config is written with the *name* of the key's
environment variable (``judge.api_key_env``) and the key file's path, never a key.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from argsfw.eval.plots import PLOTS
from argsfw.eval.stats import si

# (report key, column title, format) in table order; a column shows when any row has it
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("n_records", "n", "{:d}"),
    ("reward", "reward", "{:.4f}"),
    ("reward_se", "± se", "{:.4f}"),
    ("reward_skipped", "skipped", "{:d}"),
    ("judge_reward", "judge RM", "{:.4f}"),
    ("judge_reward_se", "± se", "{:.4f}"),
    ("diversity", "diversity", "{:.4f}"),
    ("rep_2", "rep-2", "{:.4f}"),
    ("rep_3", "rep-3", "{:.4f}"),
    ("rep_4", "rep-4", "{:.4f}"),
    ("coherence", "coherence", "{:.4f}"),
    ("answer_length", "answer chars", "{:.0f}"),
    ("gain", "gain", "{:+.3f}"),
    ("gain_se", "± se", "{:.3f}"),
    ("gain_equal_length", "gain at equal length", "{:+.3f}"),
    ("gain_equal_length_se", "± se", "{:.3f}"),
    ("oracle", "oracle", "{:.4f}"),
    ("oracle_skipped", "oracle skipped", "{:d}"),
    ("llm_tokens_per_token", "LLM tok/tok", "{:.1f}"),
    ("rm_tokens_per_token", "RM tok/tok", "{:.1f}"),
    ("compute_tokens_per_token", "compute/tok", "{:.1f}"),
    ("llm_flops_per_token", "LLM FLOPs/tok", "si"),
    ("rm_flops_per_token", "RM FLOPs/tok", "si"),
    ("flops_per_token", "FLOPs/tok", "si"),
    ("llm_reread_fraction", "LLM re-read", "{:.1%}"),
    ("rm_reread_fraction", "RM re-read", "{:.1%}"),
    ("rm_scored_fraction", "RM-scored steps", "{:.2f}"),
    ("ms_per_token", "ms/tok", "{:.2f}"),
    ("tokens_per_second", "tok/s", "{:.1f}"),
    ("seconds_per_prompt", "s/prompt", "{:.3f}"),
    ("llm_forwards_per_token", "LLM fwd/tok", "{:.2f}"),
    ("rm_forwards_per_token", "RM fwd/tok", "{:.2f}"),
    ("peak_memory_mb", "peak MB", "{:.0f}"),
)


def slug(label: str) -> str:
    """A file-name-safe form of a label (``args-greedy w=1.5`` -> ``args-greedy_w_1.5``)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") or "input"


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt == "si" and isinstance(value, (int, float)):
        return si(float(value))
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _row_values(entry: dict[str, Any]) -> dict[str, Any]:
    m = dict(entry["metrics"])
    m["n_records"] = entry["n_records"]
    if m.get("peak_memory_bytes") is not None:
        m["peak_memory_mb"] = m["peak_memory_bytes"] / 2**20
    if m.get("seconds_per_token") is not None:
        m["ms_per_token"] = m["seconds_per_token"] * 1e3
    return m


def table_rows(
    report: dict[str, Any],
) -> tuple[list[str], list[list[Any]], list[tuple[str, str, str]]]:
    """Header (``input`` first), raw rows and the `COLUMNS` entries shown (those with a value)."""
    rows = [(e["label"], _row_values(e)) for e in report["inputs"]]
    cols = [c for c in COLUMNS if any(v.get(c[0]) is not None for _, v in rows)]
    header = ["input"] + [title for _, title, _ in cols]
    return header, [[label] + [v.get(k) for k, _, _ in cols] for label, v in rows], cols


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: metrics per input, judge results, notes and warnings."""
    header, rows, cols = table_rows(report)
    lines = ["# Evaluation report", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * len(cols)) + "|")
    for row in rows:
        cells = [str(row[0])] + [_fmt(v, fmt) for v, (_, _, fmt) in zip(row[1:], cols)]
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("judge"):
        lines += ["", "## Pairwise judge (both orders per prompt; 95% Wilson intervals)", ""]
        lines.append(
            "| A | B (baseline) | judged | win | tie | lose | unparsed | failed | win-or-tie [95% CI] |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for j in report["judge"]:
            ci = j["win_or_tie_rate_ci95"]
            rate = (
                "–"
                if j["win_or_tie_rate"] is None
                else f"{j['win_or_tie_rate']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
            )
            lines.append(
                f"| {j['a']} | {j['b']} | {j['n_judged']} | {j['win']} | {j['tie']} | {j['lose']} "
                f"| {j['unparsed']} | {j['failed']} | {rate} |"
            )
    lines += _instrument_lines(report.get("instruments") or {})
    notes = report.get("notes", []) + [w for e in report["inputs"] for w in e.get("warnings", [])]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _instrument_lines(inst: dict[str, Any]) -> list[str]:
    lines = []
    if inst.get("rm_accuracy"):
        lines += [
            "",
            "## Instruments: reward models on held-out pairs, beside the length-by-domain rule",
            "",
            "| RM | pairs | accuracy ± se | length rule ± se | difference ± se (paired) | z | by domain (acc / rule) |",
            "|---|---:|---|---|---|---:|---|",
        ]
        for r in inst["rm_accuracy"]:
            dom = "; ".join(
                f"{d}: {v['acc']:.3f} / {v['rule_acc']:.3f} ({v['n']})"
                for d, v in r["by_domain"].items()
            )
            lines.append(
                f"| {r['name']} (`{r['model']}`) | {r['n']} | {r['acc']:.3f} ± {r['acc_se']:.3f} "
                f"| {r['rule_acc']:.3f} ± {r['rule_se']:.3f} | {r['diff']:+.3f} ± {r['diff_se']:.3f} "
                f"| {r['z']:+.1f} | {dom} |"
            )
    if inst.get("length_baseline"):
        lines += [
            "",
            f"Gains are in {inst.get('gain_of')} over `{inst['length_baseline']}`, per prompt; "
            "*at equal length* is the intercept of the per-prompt gain regressed on the "
            "difference in answer length (characters).",
        ]
    return lines


# Written last, once every file of the report is in: like predict's DONE, a reader (the
# pipeline, a person, a script) takes the report as finished only when it is there.
REPORT_DONE = "DONE"


def report_complete(run_dir: str | Path) -> bool:
    """True when `run_dir` holds a finished evaluation (its ``DONE`` marker and report files)."""
    run = Path(run_dir)
    return all((run / name).is_file() for name in (REPORT_DONE, "report.json", "report.md"))


def start_report(run_dir: str | Path) -> None:
    """Remove an earlier report and its marker, so a run killed from here on leaves none that
    looks finished (a report.md of other inputs beside this run's config is worse than none)."""
    run = Path(run_dir)
    for name in (REPORT_DONE, "report.json", "report.md"):
        (run / name).unlink(missing_ok=True)


def mark_report_done(run_dir: str | Path) -> None:
    """Write the completion marker (call after every report file is written)."""
    (Path(run_dir) / REPORT_DONE).write_text("report.json, report.md and plots are complete\n")


def write_report(report: dict[str, Any], run_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` (each atomically) and the plots under `run_dir`.

    Returns:
        ``{"json": ..., "markdown": ..., "<plot name>": ...}`` for every file written.
    """
    from argsfw.config.run_dir import atomic_file

    run = Path(run_dir)
    (run / "plots").mkdir(parents=True, exist_ok=True)
    files = {"json": run / "report.json", "markdown": run / "report.md"}
    with atomic_file(files["json"]) as f:
        f.write(json.dumps(report, indent=2, default=str) + "\n")
    with atomic_file(files["markdown"]) as f:
        f.write(markdown(report))
    for name, fn in PLOTS.items():
        path = fn(report, run / "plots" / f"{name}.png")
        if path is not None:
            files[name] = path
    return files


def log_wandb(run: Any, report: dict[str, Any], files: dict[str, Path]) -> None:
    """Log the metrics table, flat summary metrics, judge results and plots to a W&B run."""
    import wandb

    header, rows, _ = table_rows(report)
    payload: dict[str, Any] = {"eval/metrics": wandb.Table(columns=header, data=rows)}
    for name, path in files.items():
        if path.suffix == ".png":
            payload[f"eval/plots/{name}"] = wandb.Image(str(path))
    if report.get("judge"):
        cols = ["a", "b", "n_judged", "win", "tie", "lose", "unparsed", "failed", "win_or_tie_rate"]
        payload["eval/judge"] = wandb.Table(
            columns=cols, data=[[j[c] for c in cols] for j in report["judge"]]
        )
    run.log(payload)
    for key, value in flat_metrics(report).items():
        run.summary[key] = value


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """``{"eval/<label>/<metric>": value}`` for every numeric metric, and judge rates."""
    flat: dict[str, float] = {}
    for e in report["inputs"]:
        for k, v in e["metrics"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                flat[f"eval/{e['label']}/{k}"] = float(v)
    for j in report.get("judge", []):
        for k in ("win_rate", "win_or_tie_rate"):
            if j[k] is not None:
                flat[f"eval/judge/{j['a']}_vs_{j['b']}/{k}"] = float(j[k])
    return flat
