"""The GPU kit's report: joins the steps' records into results.json and results.md.

A step with no record, or one left "running", was killed or crashed: ``run.sh`` wrote its exit
code (124/137: out of time) beside it, and the report says so with the tail of its log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kit import PROMPT_TOKENS, STEPS, write_json

TARGETS = dict(vs_plain=2.2, batch_gain=8.0, vs_original=3.0)  # issue 14, bf16, k = 10


def load_steps(out: Path) -> dict:
    """Every step's record; a missing or unfinished one becomes failed / timeout / not run."""
    steps = {}
    for name in ("install", *STEPS):
        f, rc = out / "steps" / f"{name}.json", out / "steps" / f"{name}.rc"
        rec = json.loads(f.read_text()) if f.is_file() else None
        code = int(rc.read_text().strip() or 1) if rc.is_file() else None
        if rec is None:
            ref = out / "steps" / f"{name}.log_name"  # steps run together share one log
            log = out / "logs" / (ref.read_text().strip() if ref.is_file() else f"{name}.log")
            tail = log.read_text()[-1500:] if log.is_file() else ""
            why = "timeout" if code in (124, 137) else "failed" if code is not None else "not run"
            rec = dict(status=why, rc=code, error=tail)
        elif rec.get("status") == "running":
            rec["status"] = "timeout" if code in (124, 137) else "failed"
        steps[name] = rec
    return steps


def targets(speed: dict) -> list[dict]:
    """Issue 14's targets on the first dtype (bf16), k = 10, batch 1 vs 16."""
    dt = (speed.get("sizes") or {}).get("dtypes", ["bfloat16"])[0]
    row = next((r for r in speed.get("rows", []) if r["dtype"] == dt and r["k"] == 10), None)
    b = next((r for r in speed.get("batch", []) if r["dtype"] == dt and r["k"] == 10), None)
    specs = [
        (
            "ARGS-greedy / plain greedy (k=10, batch 1)",
            row and row["vs_plain"],
            "<=",
            TARGETS["vs_plain"],
        ),
        (
            f"batch {b['batch'] if b else 16} / batch 1 prompts/s (k=10)",
            b and b["gain"],
            ">=",
            TARGETS["batch_gain"],
        ),
        (
            "speedup over the original structure (k=10, batch 1)",
            row and row["speedup"],
            ">=",
            TARGETS["vs_original"],
        ),
    ]
    out = []
    for name, value, op, goal in specs:
        if value is None:
            out.append(dict(target=f"{name} {op} {goal}", value=None, met=None))
            continue
        met = value <= goal if op == "<=" else value >= goal
        miss = None if met else round(abs(value / goal - 1) * 100, 1)
        out.append(
            dict(
                target=f"{name} {op} {goal}",
                dtype=dt,
                value=round(value, 3),
                met=met,
                missed_by_pct=miss,
            )
        )
    return out


def mib(b) -> str:
    return "—" if b is None else f"{b / 2**20:,.0f}"


def num(v, unit: str = "") -> str:
    return "—" if v is None else f"{v:.2f}{unit}"


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table of ``header`` and ``rows``."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def steps_section(res: dict) -> list[str]:
    env, st = res["steps"]["env"], res["steps"]
    v = env.get("versions", {})
    head = (
        f"{env.get('device', 'CPU')} · torch {v.get('torch')} (CUDA {env.get('torch_cuda')}) · "
        f"transformers {v.get('transformers')} · deepspeed {v.get('deepspeed')} · "
        f"python {env.get('python')} · total {res['seconds']:.0f} s"
    )
    rows = []
    for name, rec in st.items():
        err = (rec.get("error") or "")[-160:].replace("\n", " ").replace("|", "/")
        note = rec.get("reason") or rec.get("checked") or rec.get("note") or err
        rows.append([name, rec.get("status"), rec.get("seconds", ""), note])
    return [f"# argsfw GPU kit — {res['mode']}", "", head, ""] + table(
        ["step", "status", "seconds", "note"], rows
    )


def identity_section(idn: dict) -> list[str]:
    if not idn.get("cases"):
        return []
    title = (
        f"**fp32 token identity** ({idn['device']}, attention `{idn['attn_implementation']}`, "
        f"prompts of {idn['prompt_tokens']} tokens, {idn['new_tokens']} new, k = {idn['k']}):"
    )
    rows = [
        [c["case"], c["batch_size"], "yes" if c["identical"] else f"NO {c['mismatched_prompts']}"]
        for c in idn["cases"]
    ]
    return ["", title, ""] + table(["case", "batch", "identical to the reference"], rows)


def speed_section(sp: dict) -> list[str]:
    if not sp.get("rows"):
        return []
    p, new = sp["params"], sp["sizes"]["new"]
    out = [
        "",
        f"**Decoding speed**: Llama policy {p['policy'] / 1e6:,.1f}M + RM {p['rm'] / 1e6:,.1f}M "
        f"parameters (random), vocab {sp['vocab']}, ~{PROMPT_TOKENS}-token HH-RLHF prompts, "
        f"{new} new tokens, w = 1, attention `{sp['attn_implementation']}`; seconds per prompt.",
        "",
    ]
    rows = [
        [r["dtype"], r["k"], num(r["fast_s"]), num(r["orig_s"]), num(r["plain_s"])]
        + [num(r["speedup"], "x"), num(r["vs_plain"], "x"), "yes" if r["same_tokens"] else "no"]
        + [f"{mib(r['mem_fast'])} / {mib(r['mem_orig'])} / {mib(r['mem_plain'])}"]
        for r in sp["rows"]
    ]
    head = ["dtype", "k", "argsfw", "original", "plain", "vs original", "argsfw / plain"]
    out += table(head + ["same tokens as original", "peak MiB argsfw / original / plain"], rows)
    rows = [
        [b["dtype"], b["k"], b["batch"], num(b["prompts_per_s"]), num(b["batch1_prompts_per_s"])]
        + [num(b["gain"], "x"), num(b["vs_original"], "x"), mib(b["mem"])]
        for b in sp.get("batch", [])
    ]
    head = ["dtype", "k", "batch", "prompts/s", "batch-1 prompts/s", "gain", "vs original"]
    out += [""] + table(head + ["peak MiB"], rows)
    rows = [
        [g["dtype"], g["k"], f"{g['identical']}/{g['prompts']}"]
        + [f"{g['common_prefix_frac']:.0%}", f"{g['same_position_frac']:.0%}"]
        for g in sp.get("agreement", [])
    ]
    head = ["dtype", "k", "rows identical to fp32", "common prefix", "same positions"]
    out += [""] + table(head, rows)
    at = PROMPT_TOKENS + new // 2
    out += ["", f"Two-forward floor (median ms of one cached forward at ~{at} positions):", ""]
    for dt, f in sp.get("floor", {}).items():
        out.append(
            f"- {dt}: policy step {f['llm_1']:.2f}; RM with 1 / 10 / 40 tokens {f['rm_1']:.2f} / "
            f"{f['rm_10']:.2f} / {f['rm_40']:.2f} → argsfw / plain can be no lower than "
            f"{(f['llm_1'] + f['rm_10']) / f['llm_1']:.2f}x at k = 10"
        )
    return out


def targets_section(res: dict) -> list[str]:
    if not res.get("targets"):
        return []
    dry = " — dry run: tiny models on a CPU, not meaningful" if res["mode"] == "dry-run" else ""
    rows = []
    for t in res["targets"]:
        met = "—" if t["met"] is None else "yes" if t["met"] else f"no ({t['missed_by_pct']}% off)"
        rows.append([t["target"], t["value"], met])
    return ["", f"**Targets** (issue 14){dry}:", ""] + table(["target", "value", "met"], rows)


def profile_section(sp: dict) -> list[str]:
    out = []
    if pr := sp.get("profile"):
        out += [
            "",
            f"Profile of one ARGS-greedy call ({pr['dtype']}, k = {pr['k']}, {pr['new_tokens']} "
            f"tokens, {pr['wall_s']} s; device busy {pr['device_busy_frac']}):",
            "",
            "```",
            pr["table"],
            "```",
        ]
    if sp.get("skipped"):
        out += ["", "Skipped for time: " + "; ".join(sp["skipped"])]
    if sp.get("errors"):  # the first line of each; results.json has the tracebacks
        out += ["", "Errors:", ""] + [f"- {e.splitlines()[0]}" for e in sp["errors"]]
    return out


def markdown(res: dict) -> str:
    """results.md: the steps, then each step's tables, then the targets and the profile."""
    st = res["steps"]
    lines = steps_section(res) + identity_section(st["identity"]) + speed_section(st["speed"])
    lines += targets_section(res) + profile_section(st["speed"])
    return "\n".join(lines) + "\n"


def report(a) -> dict:
    """Write OUT/results.json and OUT/results.md from the step records; returns the results."""
    steps = load_steps(a.out)
    t = a.out / "steps" / "started"
    res = dict(
        mode="dry-run" if a.mode == "dry" else "gpu",
        seconds=time.time() - float(t.read_text()) if t.is_file() else 0.0,
        steps=steps,
        targets=targets(steps["speed"]) if steps["speed"].get("rows") else [],
    )
    write_json(a.out / "results.json", res)
    (a.out / "results.md").write_text(markdown(res))
    return res
