"""The real study's comparison, read off its evaluation: every row's rewards and cost, the Pareto
front, and which method is best at three budgets.

    python -m argsfw.pipeline recipe=smollm_hh_study          # or: make study-real
    python benchmarks/real_study.py runs/smollm_hh_study/evaluate --out docs/real

Reads ``report.json`` (one entry per row: means, standard errors, FLOPs per generated token,
diversity, coherence, answer length, gains over greedy) and ``records.jsonl`` (every prompt's
scores, for paired differences). Prints, in Markdown:

* the table: guide RM and judge RM reward ± se (the guide is what the search optimised, the
  judge never guided anything: a large guide gain with a small judge gain is reward hacking),
  the judge gain over greedy plain and at greedy's answer length, forward FLOPs per generated
  token (policy + every reward model the row read) and as a multiple of greedy's, diversity,
  coherence and mean answer length;
* the rows on the judge-vs-FLOPs Pareto front;
* the budget table: for budgets of about greedy's cost (<= 1.5x), 4x and 16x, the row with the
  highest judge reward among those costing no more, the runner-up, and their difference in
  standard errors of the per-prompt (paired) difference.

With ``--time RUN_DIR`` (the pipeline's run directory) it adds the study's time: every step's
measured seconds (a fit's start to finish, a decoding row's summed batch seconds across every
attempt that wrote its records plus its start-up, the evaluation's start to finish) and the
wall time of those steps scheduled as the pipeline runs them (``pipeline.jobs`` at once, each
step once the fits it names are done: `argsfw.pipeline`'s own plan and dependencies). A study
run in pieces (killed and resumed across sessions) gets its uninterrupted wall time this way;
``--add STEP=SECONDS`` adds work a step's record leaves out (a feature store built earlier).

With ``--out`` it also draws the judge-vs-FLOPs and guide-vs-FLOPs plots (evaluate's own plot,
sweeps as lines, the Pareto front dashed) into that folder and writes the Markdown there as
``study.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

BUDGETS = ((1.5, "about greedy's cost (<= 1.5x)"), (4.0, "<= 4x greedy"), (16.0, "<= 16x greedy"))


def _load(folder: Path) -> tuple[dict, dict[str, dict[str, dict]]]:
    report = json.loads((folder / "report.json").read_text())
    per: dict[str, dict[str, dict]] = {}
    with (folder / "records.jsonl").open() as f:
        for line in f:
            r = json.loads(line)
            per.setdefault(r["input"], {})[str(r["id"])] = r
    return report, per


def paired(a: dict[str, dict], b: dict[str, dict], key: str) -> tuple[float, float]:
    """Mean of ``a - b`` over the prompts both scored and its standard error (nan with fewer
    than two)."""
    from argsfw.eval.stats import mean_stderr

    d = [a[i][key] - b[i][key] for i in a if i in b and a[i].get(key) is not None
         and b[i].get(key) is not None]  # fmt: skip
    mean, se = mean_stderr(d)
    return (math.nan, math.nan) if se is None else (mean, se)


def _f(v, digits=3, se=None) -> str:
    if not isinstance(v, (int, float)) or math.isnan(v):
        return "–"
    return f"{v:.{digits}f}" + (f" ± {se:.{digits}f}" if isinstance(se, (int, float)) else "")


def analyse(report: dict, per: dict[str, dict[str, dict]], metric: str = "judge_reward") -> str:
    rows = [e for e in report["inputs"] if isinstance(e["metrics"].get("flops_per_token"), float)]
    greedy = next((e for e in rows if e["label"] == "greedy"), None)
    if greedy is None:
        raise SystemExit("the report has no row labelled 'greedy': the budgets are multiples of it")
    g_flops = greedy["metrics"]["flops_per_token"]
    rows.sort(key=lambda e: e["metrics"]["flops_per_token"])
    out = [
        "| row | guide RM ± se | judge RM ± se | judge gain over greedy (at equal length) | "
        "GFLOPs/token | × greedy | diversity | coherence | answer chars | prompts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in rows:
        m = e["metrics"]
        gain = (
            f"{_f(m.get('gain'), 3, m.get('gain_se'))} ({_f(m.get('gain_equal_length'), 3)})"
            if "gain" in m
            else "–"
        )
        out.append(
            f"| {e['label']} | {_f(m.get('reward'), 3, m.get('reward_se'))} | "
            f"{_f(m.get('judge_reward'), 3, m.get('judge_reward_se'))} | {gain} | "
            f"{m['flops_per_token'] / 1e9:.2f} | {m['flops_per_token'] / g_flops:.1f} | "
            f"{_f(m.get('diversity'))} | {_f(m.get('coherence'))} | "
            f"{_f(m.get('answer_length'), 0)} | {e.get('n_records', '–')} |"
        )
    from argsfw.eval.plots import pareto_front

    front = pareto_front([(e["metrics"]["flops_per_token"], e["metrics"][metric]) for e in rows])
    out += ["", f"Pareto front ({metric} vs FLOPs per generated token): "
            + ", ".join(f"{rows[i]['label']}" for i in front)]  # fmt: skip
    out += [
        "",
        f"| budget | best ({metric} ± se) | runner-up ({metric} ± se) | difference ± se | in se |",
        "|---|---|---|---:|---:|",
    ]
    for times, name in BUDGETS:
        fit = [e for e in rows if e["metrics"]["flops_per_token"] <= times * g_flops * (1 + 1e-9)]
        fit.sort(key=lambda e: -e["metrics"][metric])
        if len(fit) < 2:
            out.append(f"| {name} | {fit[0]['label'] if fit else '–'} | – | – | – |")
            continue
        best, second = fit[0], fit[1]
        d, se = paired(per[best["label"]], per[second["label"]], metric)
        out.append(
            f"| {name} | {best['label']} ({_f(best['metrics'][metric], 3, best['metrics'].get(metric + '_se'))}) | "
            f"{second['label']} ({_f(second['metrics'][metric], 3, second['metrics'].get(metric + '_se'))}) | "
            f"{_f(d, 3, se)} | {d / se:+.1f} |"
        )  # fmt: skip
    return "\n".join(out)


def _started_finished(meta: dict) -> float:
    from datetime import datetime

    t = [datetime.strptime(meta[k], "%Y-%m-%dT%H:%M:%S%z") for k in ("started", "finished")]
    return (t[1] - t[0]).total_seconds()


def _metas(step) -> list[Path]:
    """The step's ``meta.json`` files: one, or one per setting of a predict sweep."""
    return sorted(p for p in step.run_dir.glob("**/meta.json") if "wandb" not in p.parts)


def step_seconds(step) -> float:
    """The one-core seconds `step` (an `argsfw.pipeline.Step`) took, read off its run directory."""
    if step.entry != "predict":
        path = step.run_dir / "meta.json"
        meta = json.loads(path.read_text()) if path.is_file() else {}
        return _started_finished(meta) if meta.get("finished") else 0.0  # or not started
    total = 0.0
    for meta_path in _metas(step):
        summary = json.loads(meta_path.read_text()).get("predict") or {}
        total += summary.get("seconds_this_run", 0.0) - summary.get("decode_seconds", 0.0)
        merged = meta_path.parent / "outputs.jsonl"  # a row still decoding: its part files
        for path in [merged] if merged.is_file() else meta_path.parent.glob("outputs.part-*.jsonl"):
            with path.open() as f:
                total += sum(float(json.loads(line).get("seconds", 0.0)) for line in f)
    return total


def step_complete(step) -> bool:
    metas = _metas(step)
    return bool(metas) and all(
        json.loads(p.read_text()).get("status") == "completed" for p in metas
    )


def schedule(steps, seconds: dict[str, float], jobs: int) -> float:
    """The wall time of `steps` run as `argsfw.pipeline` runs them: in order, up to `jobs` at
    once, each once the earlier steps it depends on are done."""
    from argsfw.pipeline import depends_on

    deps = {s.name: {d.name for d in depends_on(s, steps[:i])} for i, s in enumerate(steps)}
    pending, running, done, now = [s.name for s in steps], {}, set(), 0.0
    while pending or running:
        for name in list(pending):
            if len(running) >= jobs:
                break
            if deps[name] <= done:
                pending.remove(name)
                running[name] = now + seconds[name]
        now = min(running.values())
        for name in [n for n, end in running.items() if end <= now]:
            del running[name]
            done.add(name)
    return now


def time_table(run_dir: Path, add: dict[str, float]) -> str:
    from argsfw.config.compose import compose
    from argsfw.pipeline import plan

    meta = json.loads((run_dir / "meta.json").read_text())
    job = compose([f"recipe={meta['recipe']}", f"run_dir={run_dir}"])
    steps = plan(job, run_dir)
    seconds = {s.name: step_seconds(s) + add.get(s.name, 0.0) for s in steps}
    jobs = job.pipeline.jobs
    wall = schedule(steps, seconds, jobs)
    out = ["| step | seconds |", "|---|---:|"]
    out += [f"| {s.name}{f' (+{add[s.name]:.0f} s added)' if s.name in add else ''}"
            f"{'' if step_complete(s) else ' (not complete)'} | {seconds[s.name]:,.0f} |"
            for s in steps]  # fmt: skip
    total = sum(seconds.values())
    out += ["", f"{len(steps)} steps, {total / 3600:.2f} h of steps in all (each on one core, the evaluation on all); scheduled "
            f"{jobs} at a time as `argsfw.pipeline` runs them: **{wall / 3600:.2f} h** wall time"]  # fmt: skip
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("evaluate_dir", type=Path, help="the study's evaluate folder (report.json)")
    ap.add_argument("--metric", default="judge_reward", help="the reward the budgets rank by")
    ap.add_argument("--out", type=Path, help="folder for study.md and the plots")
    ap.add_argument("--time", type=Path, metavar="RUN_DIR", help="the pipeline's run directory: "
                    "add each step's seconds and the study's scheduled wall time")  # fmt: skip
    ap.add_argument("--add", action="append", default=[], metavar="STEP=SECONDS",
                    help="seconds a step's record leaves out (e.g. judge=721: its feature pass)")  # fmt: skip
    args = ap.parse_args(argv)
    if not (args.evaluate_dir / "report.json").is_file():
        print(f"error: no report.json in {args.evaluate_dir}; run the study's evaluate step "
              "first (python -m argsfw.pipeline recipe=smollm_hh_study)", file=sys.stderr)  # fmt: skip
        return 2
    report, per = _load(args.evaluate_dir)
    if not any(args.metric in e["metrics"] for e in report["inputs"]):
        print(f"error: no row has {args.metric!r}; set eval.judge_reward_model or pick --metric "
              "reward", file=sys.stderr)  # fmt: skip
        return 2
    text = analyse(report, per, args.metric)
    if args.time:
        add = {k: float(v) for k, v in (a.rsplit("=", 1) for a in args.add)}
        text += "\n\n" + time_table(args.time, add)
    print(text)
    if args.out:
        from argsfw.eval.plots import plot_vs_cost

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "study.md").write_text(text + "\n")
        plot_vs_cost(report, args.out / "pareto_judge.png", "judge_reward")
        plot_vs_cost(report, args.out / "pareto_guide.png", "reward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
