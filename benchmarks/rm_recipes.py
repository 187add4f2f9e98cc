"""The SmolLM2 reward-model recipe study: a recipe search on a dev split, and a learning curve.

    .venv/bin/python benchmarks/rm_recipes.py sweep [--grid NAME=V1,V2 ...] [--epochs 3]
    .venv/bin/python benchmarks/rm_recipes.py curve [--pairs 250,500,1000,2000,all]
    .venv/bin/python benchmarks/rm_recipes.py table      # both tables from what has run

Every fit is ``python -m argsfw.fit recipe=smollm_hh_judge_rm`` with overrides, one run directory
per setting under ``runs/rm_recipes/``; a setting whose run finished is not run again, so the
command resumes after a kill. All fits read one frozen-feature store (``model.cache_frozen``), so
only the first fit of each split layer pays the frozen bottom.

* **sweep** selects on a dev split carved from the judge's training pairs
  (``data.val_shard=[0.1,0.2]``: the pairs whose prompt hash is in [0.1, 0.2) leave training and
  are validated on), never on the held-out pairs. The grid's defaults: learning rate 3e-5, 1e-4,
  3e-4; trained top layers 2, 4, 8; validation after each of ``--epochs`` epochs.
* **curve** trains the chosen recipe on nested subsets of the judge's training pairs
  (``data.shard=[0.1, x]``: a uniform hash, so x sets the expected count) and reads each on the
  held-out pairs, beside the length-by-domain rule on the same pairs.

Writes ``docs/real/rm_sweep.md``, ``docs/real/rm_curve.md`` and ``docs/real/learning_curve.png``.
Needs ../shared/data and the packaged SmolLM2 (`make setup`).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path("runs/rm_recipes")
DOCS = Path("docs/real")
RECIPE = "smollm_hh_judge_rm"
HELD_OUT_SHARD = 0.1  # data.val_fraction of the recipe: prompt hashes below it are held out
GRID = {"optim.lr": ["3e-5", "1e-4", "3e-4"], "model.train_top_layers": ["2", "4", "8"]}


def _run(name: str, overrides: list[str]) -> Path:
    run = ROOT / name
    if (run / "metrics.json").is_file():
        print(f"[done] {name}", flush=True)
        return run
    cmd = [sys.executable, "-m", "argsfw.fit", f"recipe={RECIPE}", f"run_dir={run}", "logger=csv"]
    cmd += overrides + (["resume=true"] if (run / "checkpoints" / "last.ckpt").is_file() else [])
    if run.exists() and not (run / "checkpoints" / "last.ckpt").is_file():
        cmd.append("overwrite=true")
    print("[run]", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return run


def _epochs(run: Path) -> list[dict[str, float]]:
    """The validation metrics after each epoch, from the run's CSV log."""
    rows = []
    with (run / "logs" / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get("val/reward_acc"):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def _seconds(run: Path) -> float:
    return float(json.loads((run / "metrics.json").read_text()).get("time/fit_seconds", math.nan))


def sweep(grid: dict[str, list[str]], epochs: int, fixed: list[str]) -> None:
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        name = "sweep-" + "_".join(f"{k.split('.')[-1]}{v}" for k, v in zip(keys, values))
        _run(
            name,
            [
                "data.val_shard=[0.1,0.2]",
                f"trainer.max_epochs={epochs}",
                *(f"{k}={v}" for k, v in zip(keys, values)),
                *fixed,
            ],
        )
    table()


def curve(sizes: list[str], overrides: list[str]) -> None:
    total = 1.0 - HELD_OUT_SHARD
    n_all = _count_pairs(RECIPE) if any(size != "all" for size in sizes) else None
    for size in sizes:
        hi = 1.0 if size == "all" else HELD_OUT_SHARD + total * int(size) / n_all
        _run(f"curve-{size}", [f"data.shard=[{HELD_OUT_SHARD},{min(hi, 1.0):.6f}]", *overrides])
    table()


def _count_pairs(recipe: str, overrides: list[str] | tuple[str, ...] = ()) -> int:
    """Training pairs `recipe` loads with `overrides` (a quick load in a fresh process)."""
    out = subprocess.run(
        [sys.executable, "-c", _COUNT, recipe, *overrides],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip().splitlines()[-1])


_COUNT = """
import sys
from argsfw.config.compose import compose
from argsfw.data import load_pairs
job = compose([f"recipe={sys.argv[1]}", "data.prompt_format=raw", *sys.argv[2:]])
print(len(load_pairs(job.data, job.data.split)))
"""


def table() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# SmolLM2-135M-Instruct RM: the recipe search",
        "",
        "`python benchmarks/rm_recipes.py sweep` (recipe `smollm_hh_judge_rm`; each row one fit on",
        "the judge's training pairs minus a dev split, the prompts hashed into [0.1, 0.2), validated",
        "on that dev split after each epoch, never on the held-out pairs). *z vs rule*: the paired",
        "difference to the length-by-domain rule on the same pairs, in its standard errors.",
        "",
        "| run | epoch | dev accuracy ± se | length rule | z vs rule | val loss | fit s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for run in sorted(ROOT.glob("sweep-*")):
        finished = (run / "metrics.json").is_file()
        if not (run / "logs" / "metrics.csv").is_file():
            continue
        for e, m in enumerate(_epochs(run), 1):  # a run stopped early shows its epochs so far
            lines.append(
                f"| {run.name[6:]}{'' if finished else ' (stopped)'} | {e} | "
                f"{m['val/reward_acc']:.3f} ± {m.get('val/reward_acc_se', math.nan):.3f} "
                f"| {m.get('val/length_rule_acc', math.nan):.3f} "
                f"| {m.get('val/vs_length_rule_z', math.nan):+.1f} | {m['val/loss']:.4f} "
                f"| {_seconds(run) if finished else math.nan:.0f} |"
            )
    (DOCS / "rm_sweep.md").write_text("\n".join(lines) + "\n")
    points = []
    for run in sorted(ROOT.glob("curve-*")):
        if (run / "metrics.json").is_file():
            meta = json.loads((run / "meta.json").read_text())
            # a run whose meta.json predates the fit's data counts: its recipe and shard reloaded
            shard = [a for a in meta["command"].split() if a.startswith("data.shard=")]
            n = meta.get("data", {}).get("train", {}).get("kept") or _count_pairs(
                meta["recipe"], shard
            )
            m = _epochs(run)[-1]
            points.append((n, m, _seconds(run)))
    points.sort(key=lambda p: p[0] or 0)
    rows = [
        "# SmolLM2-135M-Instruct RM: the learning curve",
        "",
        "`python benchmarks/rm_recipes.py curve` (the chosen recipe, `smollm_hh_judge_rm`, on nested",
        "subsets of the judge's training pairs; accuracy on the 381 held-out pairs after the last",
        "epoch, beside the length-by-domain rule on the same pairs).",
        "",
        "| training pairs | held-out accuracy ± se | length rule | z vs rule | fit s |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, m, s in points:
        rows.append(
            f"| {n} | {m['val/reward_acc']:.3f} ± {m['val/reward_acc_se']:.3f} "
            f"| {m['val/length_rule_acc']:.3f} | {m['val/vs_length_rule_z']:+.1f} | {s:.0f} |"
        )
    (DOCS / "rm_curve.md").write_text("\n".join(rows) + "\n")
    if points:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ns = [p[0] for p in points]
        acc = [p[1]["val/reward_acc"] for p in points]
        se = [p[1]["val/reward_acc_se"] for p in points]
        ax.errorbar(ns, acc, yerr=se, marker="o", capsize=3, label="judge RM (held-out pairs)")
        ax.axhline(
            points[0][1]["val/length_rule_acc"], ls="--", c="grey", label="length-by-domain rule"
        )
        ax.axhline(0.5, ls=":", c="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])  # the measured sizes, no log-scale minor labels
        ax.minorticks_off()
        ax.set_xlabel("training pairs")
        ax.set_ylabel("pairwise accuracy")
        ax.set_title("SmolLM2-135M RM on HH-RLHF: learning curve")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(DOCS / "learning_curve.png", dpi=120)
    print((DOCS / "rm_sweep.md").read_text())
    print((DOCS / "rm_curve.md").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--grid", nargs="*", default=[], help="NAME=V1,V2 (replaces that axis)")
    s.add_argument("--epochs", type=int, default=3)
    s.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides of every fit")
    c = sub.add_parser("curve")
    c.add_argument("--pairs", default="250,500,1000,2000,all")
    c.add_argument("overrides", nargs="*", help="the chosen recipe's overrides")
    sub.add_parser("table")
    args = ap.parse_args()
    if args.cmd == "sweep":
        grid = dict(GRID)
        for g in args.grid:
            k, v = g.split("=", 1)
            grid[k] = v.split(",")
        sweep(grid, args.epochs, args.set)
    elif args.cmd == "curve":
        curve(args.pairs.split(","), args.overrides)
    else:
        table()


if __name__ == "__main__":
    main()
