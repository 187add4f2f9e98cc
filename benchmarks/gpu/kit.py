"""GPU verification kit: the steps `run.sh` runs, one process each, and the report that joins them.

    python benchmarks/gpu/kit.py STEP OUT [--dry-run] [--budget S] [--data DIR]
    python benchmarks/gpu/kit.py report OUT [--dry-run]

Steps (each writes ``OUT/steps/STEP.json``; a failed or killed step does not stop the next):
  env        versions, device, and whether transformers has the cache API the engine uses
  identity   fp32 ARGS-greedy (batch 1, greedy-large, batched) token for token against the
             no-cache reference path, on tiny models, on the device
  speed      ~1B Llama policy and RM (random weights) in bf16 and fp16: argsfw vs the original
             algorithm's cost structure vs plain greedy, batch 1 and 16, k = 10 and 40, peak
             memory, bf16/fp16 tokens against fp32, and a short profile
  fit_sft / fit_rm / fit_zero2
             ``python -m argsfw.fit`` on the tiny recipes with bf16-mixed (ZeRO-2 for the last)
`--dry-run` runs the same code on the CPU at tiny sizes (what ``make test`` checks); the decoding
pieces are benchmarks/decode.py's, so the kit and the CPU benchmark measure the same things.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/: decode.py's pieces

STEPS = ("env", "identity", "speed", "fit_sft", "fit_rm", "fit_zero2")
OK = ("ok", "partial", "skipped")  # statuses that do not fail the run
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "huggingface_hub",
    "safetensors",
    "lightning",
    "torchmetrics",
    "peft",
    "accelerate",
    "hydra-core",
    "omegaconf",
    "deepspeed",
    "pydantic",
    "numpy",
)

# Sizes of each step: the GPU run and the dry run differ only here.
SIZES = {
    "gpu": dict(
        # ~1B parameters each (policy 0.95B, RM 0.89B): TinyLlama-like width, 16 layers
        spec=dict(
            hidden_size=2048,
            num_layers=16,
            num_heads=16,
            intermediate_size=5632,
            max_position_embeddings=2048,
        ),
        vocab=32000,
        n_single=2,
        n_batch=16,
        new=128,
        dtypes=("bfloat16", "float16"),
        profile_tokens=16,
        floor_reps=20,
        tok_texts=None,  # the tokenizer trains on every dialogue
        fit_steps=20,
        fit_extra=(),
        identity_new=16,
    ),
    "dry": dict(
        spec=dict(
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            intermediate_size=256,
            max_position_embeddings=1024,
        ),
        vocab=2000,
        n_single=1,
        n_batch=4,
        new=8,
        dtypes=("bfloat16",),
        profile_tokens=2,
        floor_reps=5,
        tok_texts=1500,
        fit_steps=2,
        fit_extra=(
            "model.tiny.hidden_size=32",
            "model.tiny.intermediate_size=64",
            "model.tiny.num_heads=2",
            "data.limit=48",
            "optim.batch_size=8",
            "optim.micro_batch_size=8",
            "optim.warmup_steps=0",
        ),
        identity_new=8,
    ),
}
KS = (10, 40)
PROMPT_TOKENS = 300
IDENTITY_TARGETS = (40, 80, 120, 200)  # prompt lengths of the identity check (a padded batch)
TARGETS = dict(vs_plain=2.2, batch_gain=8.0, vs_original=3.0)  # issue 14, bf16, k = 10


# ---------------------------------------------------------------------------- small helpers
def write_json(path: Path, obj) -> None:
    """Write atomically, so a step killed mid-write leaves its previous record, not half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def default_data() -> Path:
    """The HH-RLHF copy prepare.sh made beside the kit, else the project's ../shared/data."""
    local = HERE / ".data" / "hh-rlhf"
    return local if local.is_dir() else REPO.parent / "shared" / "data" / "hh-rlhf"


@functools.cache
def dialogues_of(root: Path) -> list[str]:
    """The HH-RLHF dialogues (read once per process: identity and speed may share one)."""
    import decode as bench

    return bench.load_dialogues(root)


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Clock:
    """The step's time budget: units that would overrun it are skipped and listed, not run."""

    def __init__(self, budget: float):
        self.t0 = time.perf_counter()
        self.budget = budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()


# ---------------------------------------------------------------------------- env
def step_env(a) -> dict:
    import importlib.metadata as md
    import inspect

    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    import transformers
    from transformers import LlamaModel

    has_cache_api = "cache" in inspect.signature(LlamaModel.forward).parameters
    out = dict(
        python=sys.version.split()[0],
        platform=platform.platform(),
        versions=versions,
        transformers_from=str(Path(transformers.__file__).parent),
        transformers_cache_api=has_cache_api,
        cuda=torch.cuda.is_available(),
        torch_cuda=torch.version.cuda,
        tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
    )
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(
            device=p.name,
            capability=f"{p.major}.{p.minor}",
            memory_gib=round(p.total_memory / 2**30, 1),
            bf16=torch.cuda.is_bf16_supported(),
        )
        try:
            out["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            out["nvidia_smi"] = f"unavailable: {e}"
    if not has_cache_api:
        out["status"] = "failed"
        out["error"] = (
            f"transformers {versions['transformers']} has no `cache` argument (the 5.24 cache API "
            "argsfw's engine uses): install the pinned transformers from prepare.sh's wheels"
        )
    return out


# ---------------------------------------------------------------------------- identity
def step_identity(a) -> dict:
    """fp32 on the device: each fast path equals the no-cache reference, token for token."""
    import torch

    import decode as bench
    from argsfw.decoding import ArgsDecoder, DecodeConfig, reference_decode
    from argsfw.models import TinySpec, build_tiny_policy, build_tiny_reward_model, train_tokenizer

    dev, sizes = device(), SIZES[a.mode]
    dialogues = dialogues_of(a.data)
    tok = train_tokenizer(dialogues[:1000], vocab_size=512)
    spec = TinySpec(max_position_embeddings=512)
    with dev:
        llm, rm = build_tiny_policy(tok, spec, seed=0), build_tiny_reward_model(tok, spec, seed=1)
    prompts = [bench.prompts_of_length(tok, dialogues, n, 1)[0] for n in IDENTITY_TARGETS]
    dec = ArgsDecoder(llm, tok, rm)
    cases = [
        ("greedy", "args-greedy", None, 1),
        ("greedy-large", "args-greedy-large", 3, 1),
        ("batched greedy", "args-greedy", None, len(prompts)),
        ("batched greedy-large", "args-greedy-large", 3, len(prompts)),
    ]
    new = sizes["identity_new"]
    refs = [
        reference_decode(
            llm, rm, p, weight=1.5, topk=10, max_new_tokens=new, eos_ids=tuple(dec.eos_ids)
        )[0]
        for p in prompts
    ]
    rows = []
    for name, method, chunk, bs in cases:
        s = DecodeConfig(
            method=method, weight=1.5, topk=10, max_new_tokens=new, chunk_size=chunk, batch_size=bs
        )
        gens, _ = dec.generate_ids(prompts, s)
        bad = [i for i, (g, r) in enumerate(zip(gens, refs)) if g.new_ids != r]
        rows.append(
            dict(
                case=name,
                method=method,
                batch_size=bs,
                prompts=len(prompts),
                identical=not bad,
                mismatched_prompts=bad,
            )
        )
    return dict(
        status="ok" if all(r["identical"] for r in rows) else "failed",
        device=str(dev),
        dtype="float32",
        attn_implementation=llm.config._attn_implementation,
        prompt_tokens=[len(p) for p in prompts],
        new_tokens=new,
        k=10,
        weight=1.5,
        cases=rows,
        **({} if dev.type == "cpu" else {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32}),
    )


# ---------------------------------------------------------------------------- speed
def agreement(tokens: list[list[int]], ref: list[list[int]]) -> dict:
    """How far lower-precision tokens follow fp32's: identical rows, common prefix, same positions."""
    prefix, same = [], []
    for t, r in zip(tokens, ref):
        n = next((i for i, (x, y) in enumerate(zip(t, r)) if x != y), min(len(t), len(r)))
        prefix.append(n / max(len(r), 1))
        same.append(sum(x == y for x, y in zip(t, r)) / max(len(r), 1))
    return dict(
        prompts=len(ref),
        identical=sum(t == r for t, r in zip(tokens, ref)),
        common_prefix_frac=round(sum(prefix) / len(prefix), 4),
        same_position_frac=round(sum(same) / len(same), 4),
    )


def profile_args(dec, prompt, k: int, new: int) -> dict:
    """torch.profiler over one ARGS-greedy call: top ops, and how busy the GPU was."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import decode as bench

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    bench.sync()
    with profile(activities=acts) as prof:
        _, wall = bench.timed(lambda: bench.run_fast(dec, [prompt], k, new))
    events = prof.key_averages()
    dev_us = sum(getattr(e, "self_device_time_total", 0) for e in events) if cuda else 0
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    return dict(
        k=k,
        new_tokens=new,
        wall_s=round(wall, 3),
        device_busy_frac=round(dev_us / 1e6 / wall, 3) if cuda else None,
        table=events.table(sort_by=sort, row_limit=12, max_name_column_width=48),
    )


def step_speed(a) -> dict:
    import torch

    import decode as bench
    from argsfw.decoding import ArgsDecoder
    from argsfw.models import TinySpec

    clock, dev, sizes = Clock(a.budget), device(), SIZES[a.mode]
    out = dict(status="running", device=str(dev), sizes={**sizes, "k": KS}, skipped=[])
    path = a.out / "steps" / "speed.json"

    def save():
        write_json(path, {**out, "seconds": round(clock.elapsed(), 1)})

    dialogues = dialogues_of(a.data)
    spec = TinySpec(arch="llama", **sizes["spec"])
    with dev:  # initialise the weights where they will run (1B on a CPU takes tens of seconds)
        tok, llm32, rm32 = bench.build_models(
            dialogues[: sizes["tok_texts"]], spec, sizes["vocab"]
        )
    single = bench.prompts_of_length(tok, dialogues, PROMPT_TOKENS, sizes["n_batch"])
    batch, single = single, single[: sizes["n_single"]]
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    out.update(
        vocab=len(tok),
        params=dict(policy=n_params(llm32), rm=n_params(rm32)),
        prompt_tokens=[len(p) for p in batch],
        attn_implementation=llm32.config._attn_implementation,
        rows=[],
        batch=[],
        agreement=[],
        floor={},
    )
    new, pad = sizes["new"], tok.pad_token_id
    save()

    # fp32 tokens first, as the reference for the lower precisions; then fp32 leaves the device
    dec32 = ArgsDecoder(llm32, tok, rm32)
    ref = {k: [bench.run_fast(dec32, [p], k, new)[0][0].new_ids for p in single] for k in KS}
    master = (llm32.to("cpu"), rm32.to("cpu"))
    del dec32
    took: dict[str, float] = {}  # a unit's seconds in the first dtype: the estimate for the next

    for dtype_name in sizes["dtypes"]:
        dtype = getattr(torch, dtype_name)
        llm, rm = (copy.deepcopy(m).to(dev, dtype) for m in master)
        dec = ArgsDecoder(llm, tok, rm)
        bench.run_fast(dec, single[:1], 10, 4)  # warm-up: kernels, allocator, cuBLAS handles
        bench.original_args_greedy(llm, rm, single[0], 10, 1.0, 4)
        bench.run_plain(llm, single[0], 4, pad)
        out["floor"][dtype_name] = bench.forward_floor(
            llm, rm, PROMPT_TOKENS + new // 2, KS, sizes["floor_reps"]
        )
        for k in KS:
            for unit in ("compare", "batch"):
                key = f"{unit}{k}"
                need = took.get(key, 0.0)
                if clock.left() < need:
                    out["skipped"].append(f"{dtype_name} {unit} k={k} (needs ~{need:.0f}s)")
                    continue
                t0 = time.perf_counter()
                if unit == "compare":
                    r = bench.compare(dec, llm, rm, single, k, new, pad)
                    out["agreement"].append(
                        dict(dtype=dtype_name, k=k, **agreement(r.pop("tokens"), ref[k]))
                    )
                    out["rows"].append(dict(dtype=dtype_name, batch=1, new=new, **r))
                else:
                    (_, st), dt, mem = bench.peak_timed(
                        lambda k=k: bench.run_fast(dec, batch, k, new, batch_size=len(batch))
                    )
                    one = next(
                        (x for x in out["rows"] if x["dtype"] == dtype_name and x["k"] == k), None
                    )
                    out["batch"].append(
                        dict(
                            dtype=dtype_name,
                            k=k,
                            batch=len(batch),
                            seconds=dt,
                            prompts_per_s=len(batch) / dt,
                            batch1_prompts_per_s=1 / one["fast_s"] if one else None,
                            gain=len(batch) / dt * one["fast_s"] if one else None,
                            vs_original=len(batch) / dt * one["orig_s"] if one else None,
                            mem=mem,
                            rm_cache=st.rm_cache_bytes_peak,
                        )
                    )
                took.setdefault(key, time.perf_counter() - t0)
                save()
        if dtype_name == sizes["dtypes"][0] and clock.left() > 10:
            out["profile"] = dict(dtype=dtype_name, **profile_args(dec, single[0], 10, sizes["profile_tokens"]))
        del llm, rm, dec
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    out["status"] = "partial" if out["skipped"] else "ok"
    return out


# ---------------------------------------------------------------------------- fits
def fit_args(a, name: str) -> list[str]:
    sizes = SIZES[a.mode]
    recipe = "tiny_rm" if name == "fit_rm" else "tiny_sft"
    args = [
        f"recipe={recipe}",
        f"run_dir={a.out / 'runs' / name}",
        "overwrite=true",
        "logger.name=none",
        "trainer.enable_progress_bar=false",
        f"trainer.accelerator={'cpu' if a.mode == 'dry' else 'gpu'}",
        "trainer.devices=1",
        "trainer.precision=bf16-mixed",
        f"trainer.max_steps={sizes['fit_steps']}",
        "trainer.limit_val_batches=2",
        *sizes["fit_extra"],
    ]
    if name == "fit_zero2":
        args.append("strategy=deepspeed_zero2")
        if a.mode == "dry":
            # A ZeRO fit on CPU compiles DeepSpeed's shared-memory op (minutes on a fresh machine);
            # the dry run checks the command composes, and tests/integration/test_fit_distributed.py
            # runs ZeRO-2/3 fits on CPU for real.
            args.append("print_config=true")
    return args


def step_fit(a) -> dict:
    import importlib.util

    name = a.step
    if name == "fit_zero2" and importlib.util.find_spec("deepspeed") is None:
        return dict(status="skipped", reason="deepspeed is not installed here (see logs/install.log)")
    args = fit_args(a, name)
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    out = dict(command="python -m argsfw.fit " + " ".join(args))
    log = a.out / "logs" / f"{name}.fit.log"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "argsfw.fit", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(a.budget - 5, 10),
        )
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        log.write_text(text)
        return dict(out, status="timeout", error=f"killed after {e.timeout:.0f} s: {text[-1000:]}")
    out["rc"] = proc.returncode
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return dict(out, status="failed", error=(proc.stderr or proc.stdout)[-1500:])
    if "print_config=true" in args:
        ok = "zero_stage: 2" in proc.stdout and "name: deepspeed" in proc.stdout
        return dict(out, status="ok" if ok else "failed", checked="config only (dry run)")
    run = a.out / "runs" / name
    m = json.loads((run / "metrics.json").read_text())
    loss = m.get("train/loss")
    checks = dict(
        steps=m.get("trainer/global_step") == SIZES[a.mode]["fit_steps"],
        finite_loss=isinstance(loss, float) and math.isfinite(loss),
        exported=(run / "hf" / "model.safetensors").is_file(),
        bf16_mixed="precision: bf16-mixed" in (run / "config.yaml").read_text(),
    )
    return dict(out, status="ok" if all(checks.values()) else "failed", checks=checks, metrics=m)


# ---------------------------------------------------------------------------- report
def load_steps(out: Path) -> dict:
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
        ("ARGS-greedy / plain greedy (k=10, batch 1)", row and row["vs_plain"], "<=", TARGETS["vs_plain"]),
        (f"batch {b['batch'] if b else 16} / batch 1 prompts/s (k=10)", b and b["gain"], ">=", TARGETS["batch_gain"]),
        ("speedup over the original structure (k=10, batch 1)", row and row["speedup"], ">=", TARGETS["vs_original"]),
    ]
    out = []
    for name, value, op, goal in specs:
        if value is None:
            out.append(dict(target=f"{name} {op} {goal}", value=None, met=None))
            continue
        met = value <= goal if op == "<=" else value >= goal
        miss = None if met else round(abs(value / goal - 1) * 100, 1)
        out.append(dict(target=f"{name} {op} {goal}", dtype=dt, value=round(value, 3), met=met, missed_by_pct=miss))
    return out


def mib(b) -> str:
    return "—" if b is None else f"{b / 2**20:,.0f}"


def markdown(res: dict) -> str:
    env, st = res["steps"]["env"], res["steps"]
    sp = st["speed"]
    lines = [
        f"# argsfw GPU kit — {res['mode']}",
        "",
        f"{env.get('device', 'CPU')} · torch {env.get('versions', {}).get('torch')} (CUDA {env.get('torch_cuda')}) · "
        f"transformers {env.get('versions', {}).get('transformers')} · deepspeed {env.get('versions', {}).get('deepspeed')} · "
        f"python {env.get('python')} · total {res['seconds']:.0f} s",
        "",
        "| step | status | seconds | note |",
        "|---|---|---:|---|",
    ]
    for name, rec in st.items():
        note = rec.get("reason") or rec.get("checked") or (rec.get("error") or "")[-160:].replace("\n", " ").replace("|", "/")
        lines.append(f"| {name} | {rec.get('status')} | {rec.get('seconds', '')} | {note} |")
    if st["identity"].get("cases"):
        idn = st["identity"]
        lines += ["", f"**fp32 token identity** ({idn['device']}, attention `{idn['attn_implementation']}`, prompts {idn['prompt_tokens']} tokens, {idn['new_tokens']} new, k = 10):", ""]
        lines += ["| case | batch | identical to the reference |", "|---|---:|---|"]
        lines += [f"| {c['case']} | {c['batch_size']} | {'yes' if c['identical'] else 'NO ' + str(c['mismatched_prompts'])} |" for c in idn["cases"]]
    if sp.get("rows"):
        p = sp["params"]
        lines += ["", f"**Decoding speed**: Llama policy {p['policy'] / 1e6:,.1f}M + RM {p['rm'] / 1e6:,.1f}M params (random), vocab {sp['vocab']}, "
                  f"~{PROMPT_TOKENS}-token HH-RLHF prompts, {sp['sizes']['new']} new tokens, w = 1, attention `{sp['attn_implementation']}`.", ""]
        lines += ["| dtype | k | argsfw s | original s | plain s | vs original | argsfw / plain | same tokens as original | peak MiB argsfw / original / plain |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in sp["rows"]:
            lines.append(f"| {r['dtype']} | {r['k']} | {r['fast_s']:.2f} | {r['orig_s']:.2f} | {r['plain_s']:.2f} | {r['speedup']:.2f}x | {r['vs_plain']:.2f}x | {'yes' if r['same_tokens'] else 'no'} | {mib(r['mem_fast'])} / {mib(r['mem_orig'])} / {mib(r['mem_plain'])} |")
    if sp.get("batch"):
        lines += ["", "| dtype | k | batch | prompts/s | batch-1 prompts/s | gain | vs original | peak MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for b in sp["batch"]:
            g = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {b['dtype']} | {b['k']} | {b['batch']} | {b['prompts_per_s']:.2f} | {g(b['batch1_prompts_per_s'])} | {g(b['gain'])}x | {g(b['vs_original'])}x | {mib(b['mem'])} |")
    if sp.get("agreement"):
        lines += ["", "| dtype | k | rows identical to fp32 | common prefix | same positions |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {g['dtype']} | {g['k']} | {g['identical']}/{g['prompts']} | {g['common_prefix_frac']:.0%} | {g['same_position_frac']:.0%} |" for g in sp["agreement"]]
    if sp.get("floor"):
        lines += ["", "Two-forward floor (median ms of one cached forward at ~%d positions):" % (PROMPT_TOKENS + sp["sizes"]["new"] // 2), ""]
        for dt, f in sp["floor"].items():
            lines.append(f"- {dt}: policy step {f['llm_1']:.2f}, RM 1 / 10 / 40 tokens {f['rm_1']:.2f} / {f['rm_10']:.2f} / {f['rm_40']:.2f} → floor of argsfw/plain at k=10 {(f['llm_1'] + f['rm_10']) / f['llm_1']:.2f}x")
    if res.get("targets"):
        lines += ["", "**Targets** (issue 14)" + (" — dry run: tiny models on a CPU, not meaningful" if res["mode"] == "dry-run" else "") + ":", "", "| target | value | met |", "|---|---:|---|"]
        for t in res["targets"]:
            met = "—" if t["met"] is None else "yes" if t["met"] else f"no ({t['missed_by_pct']}% off)"
            lines.append(f"| {t['target']} | {t['value']} | {met} |")
    if sp.get("profile"):
        pr = sp["profile"]
        lines += ["", f"Profile of one ARGS-greedy call ({pr['dtype']}, k = {pr['k']}, {pr['new_tokens']} tokens, {pr['wall_s']} s; device busy {pr['device_busy_frac']}):", "", "```", pr["table"], "```"]
    if sp.get("skipped"):
        lines += ["", "Skipped for time: " + "; ".join(sp["skipped"])]
    return "\n".join(lines) + "\n"


def report(a) -> dict:
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


# ---------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "step", help=f"one of {', '.join(STEPS)}, several joined by commas (one process), or report"
    )
    ap.add_argument("out", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds this step may take")
    ap.add_argument("--data", type=Path, default=None, help="the hh-rlhf folder (default: prepare.sh's copy, else ../shared/data)")
    a = ap.parse_args(argv)
    a.mode = "dry" if a.dry_run else "gpu"
    a.data = a.data or default_data()
    (a.out / "steps").mkdir(parents=True, exist_ok=True)
    (a.out / "logs").mkdir(parents=True, exist_ok=True)
    if a.step == "report":
        res = report(a)
        print((a.out / "results.md").read_text())
        return 0 if all(s.get("status") in OK for s in res["steps"].values()) else 1
    names = a.step.split(",")
    if bad := [n for n in names if n not in STEPS]:
        ap.error(f"unknown step {bad[0]!r}; choose from {', '.join(STEPS)} or report")
    if a.mode == "gpu":
        import torch

        if not torch.cuda.is_available():
            print("kit: no CUDA device here; use --dry-run on a CPU", file=sys.stderr)
            return 2
    clock, rc = Clock(a.budget), 0
    for name in names:
        rec = run_step(argparse.Namespace(**{**vars(a), "step": name, "budget": clock.left()}))
        print(f"kit {name}: {rec['status']} in {rec['seconds']} s", flush=True)
        rc = rc or int(rec["status"] not in OK)
    return rc


def run_step(a) -> dict:
    """Run one step and write its record; an exception is recorded, not raised (later steps still run)."""
    fn = {"env": step_env, "identity": step_identity, "speed": step_speed}.get(a.step, step_fit)
    t0 = time.perf_counter()
    try:
        rec = fn(a)
    except Exception as e:
        tb = traceback.format_exc()[-3000:]
        rec = dict(status="failed", error=f"{type(e).__name__}: {e}", traceback=tb)
    rec.setdefault("status", "ok")
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(a.out / "steps" / f"{a.step}.json", rec)
    return rec


if __name__ == "__main__":
    sys.exit(main())
