"""The compute targets of speculative best-of-N and cost-gated ARGS, read off one evaluation report.

    python -m argsfw.pipeline recipe=tiny_compute            # after make demo (its SFT policy and RM)
    python benchmarks/compute_targets.py runs/tiny_compute/evaluate/report.json

    python -m argsfw.pipeline recipe=smollm_hh_study         # SmolLM2, real HH prompts: one
    python benchmarks/compute_targets.py runs/smollm_hh_study/evaluate/report.json   # schedule
    python -m argsfw.pipeline recipe=smollm_hh_compute       # three schedules, three thresholds
    python benchmarks/compute_targets.py runs/smollm_hh_compute/evaluate/report.json

Every row of a report was decoded and evaluated in one pipeline run, on the same prompts, the
same models and the same machine, and rewards are the evaluation's (the guide RM's own forward
on prompt + answer), so the ratios below compare like with like:

* speculative best-of-N against best-of-N of the same N: the share of best-of-N's reward gain
  over greedy it keeps, at what share of best-of-N's compute (target: >= 95% of the gain at
  <= 40% of the compute);
* args-gated against ARGS-greedy of the same w and k: the share of ARGS-greedy's gain over
  greedy, at what share of its reward-model compute (target: >= 95% at <= 50%).

Compute is forward FLOPs per prompt (FLOPs per generated token x generated tokens per prompt:
answers of different lengths cost what they cost); the token-position ratios are printed
beside them, and the re-read fraction of each row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPEC_GAIN, SPEC_COMPUTE = 0.95, 0.40
GATE_GAIN, GATE_RM = 0.95, 0.50


def _per_prompt(m: dict, key: str) -> float | None:
    """A per-generated-token metric times the generated tokens per prompt, or None."""
    v, n = m.get(key), m.get("new_tokens_per_prompt")
    return v * n if isinstance(v, (int, float)) and isinstance(n, (int, float)) else None


def _ratio(a, b) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _gain(row: dict, ref: dict, greedy: dict) -> float | None:
    """The share of ``ref``'s reward gain over greedy that ``row`` gets."""
    r, f, g = (e["metrics"].get("reward") for e in (row, ref, greedy))
    return _ratio(r - g, f - g) if None not in (r, f, g) else None


def _knob(e: dict, name: str):
    """A row's setting: the report entry's ``settings`` (the method's knobs), else its label
    (``every=4`` -> 4)."""
    value = (e.get("settings") or {}).get(name)
    if value is not None:
        return value
    short = {"num_samples": "N", "weight": "w", "topk": "k", "gate_threshold": "τ"}.get(name, name)
    for part in str(e["label"]).split():
        if part.startswith(f"{short}="):
            return float(part.split("=", 1)[1])
    return None


def rows(report: dict) -> list[dict]:
    """One dict per (method row, reference row) pair the targets compare."""
    by = {}
    for e in report["inputs"]:
        by.setdefault(e.get("method"), []).append(e)
    greedy = next((e for e in by.get("greedy", []) if e["label"] == "greedy"), None)
    if greedy is None:
        raise SystemExit("the report has no plain greedy row (label 'greedy'): gains need it")
    out = []
    for spec in by.get("speculative-best-of-n", []):
        n = _knob(spec, "num_samples")
        ref = next((e for e in by.get("best-of-n", []) if _knob(e, "num_samples") == n), None)
        if ref is not None:
            out.append(_pair(spec, ref, greedy, "compute", SPEC_GAIN, SPEC_COMPUTE))
    for gated in by.get("args-gated", []):
        wk = (_knob(gated, "weight"), _knob(gated, "topk"))
        ref = next(
            (e for e in by.get("args-greedy", []) if (_knob(e, "weight"), _knob(e, "topk")) == wk),
            None,
        )
        if ref is not None:
            out.append(_pair(gated, ref, greedy, "rm", GATE_GAIN, GATE_RM))
    return out


def _pair(row, ref, greedy, what: str, want_gain: float, want_cost: float) -> dict:
    m, r = row["metrics"], ref["metrics"]
    flops = "flops_per_token" if what == "compute" else "rm_flops_per_token"
    tokens = "compute_tokens_per_token" if what == "compute" else "rm_tokens_per_token"
    gain = _gain(row, ref, greedy)
    cost = _ratio(_per_prompt(m, flops), _per_prompt(r, flops))
    met = gain is not None and cost is not None and gain >= want_gain and cost <= want_cost
    return {
        "row": row["label"],
        "reference": ref["label"],
        "reward": m.get("reward"),
        "reference_reward": r.get("reward"),
        "greedy_reward": greedy["metrics"].get("reward"),
        "gain_share": gain,
        "cost": "FLOPs" if what == "compute" else "RM FLOPs",
        "cost_share": cost,
        "token_share": _ratio(_per_prompt(m, tokens), _per_prompt(r, tokens)),
        "per_token_share": _ratio(m.get(flops), r.get(flops)),
        "reread": (m.get("llm_reread_fraction"), m.get("rm_reread_fraction")),
        "target": f">= {want_gain:.0%} of the gain at <= {want_cost:.0%} of the {what} FLOPs",
        "met": met,
    }


def markdown(pairs: list[dict]) -> str:
    """The pairs as a Markdown table."""
    lines = [
        "| row | vs | reward (ref, greedy) | gain kept | cost | share per prompt | tokens | per token | re-read LLM / RM | target met |",
        "|---|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    for p in pairs:
        rr = " / ".join(_pct(v) if v is not None else "–" for v in p["reread"])
        lines.append(
            f"| {p['row']} | {p['reference']} | {p['reward']:.3f} ({p['reference_reward']:.3f}, "
            f"{p['greedy_reward']:.3f}) | {_pct(p['gain_share'])} | {p['cost']} | "
            f"{_pct(p['cost_share'])} | {_pct(p['token_share'])} | {_pct(p['per_token_share'])} | "
            f"{rr} | {'yes' if p['met'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", type=Path, help="an evaluation report.json")
    ap.add_argument("--json", action="store_true", help="print the pairs as JSON")
    args = ap.parse_args(argv)
    if not args.report.is_file():
        print(
            f"error: {args.report} is not a file (give an evaluation's report.json)",
            file=sys.stderr,
        )
        return 2
    pairs = rows(json.loads(args.report.read_text()))
    if not pairs:
        print(
            "error: no speculative/best-of-N or gated/ARGS-greedy pair in the report",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(pairs, indent=2) if args.json else markdown(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
