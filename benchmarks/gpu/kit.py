"""GPU verification kit: the steps `run.sh` runs, one process each, and the report that joins them.

    python benchmarks/gpu/kit.py STEP[,STEP...] WORK [--dry-run] [--budget S] [--data DIR]
    python benchmarks/gpu/kit.py report WORK [--dry-run]

Steps (each writes ``WORK/steps/STEP.json``; a failed or killed step does not stop the next;
``run.sh`` copies the report out of WORK):
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
import shutil
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
        # ~1B parameters each (policy 0.91B, RM 0.86B with the 20,487-token BPE the HH text gives)
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
    import decode as bench
    import torch

    from argsfw.decoding import ArgsDecoder, decode_settings, reference_decode
    from argsfw.models import TinySpec, build_tiny_policy, build_tiny_reward_model, train_tokenizer

    dev, sizes = device(), SIZES[a.mode]
    dialogues = dialogues_of(a.data)
    tok = train_tokenizer(dialogues[:1000], vocab_size=512)
    spec = TinySpec(max_position_embeddings=512)
    with dev:
        llm, rm = build_tiny_policy(tok, spec, seed=0), build_tiny_reward_model(tok, spec, seed=1)
    llm, rm = llm.to(dev), rm.to(dev)  # a no-op unless from_config ignored the device context
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
        s = decode_settings(
            method=method, weight=1.5, topk=10, max_new_tokens=new, chunk_size=chunk,
            batch_size=bs, lenient=True,
        )  # fmt: skip
        gens, _ = dec.generate_ids(prompts, s)
        bad = [i for i, (g, r) in enumerate(zip(gens, refs)) if g.new_ids != r]
        first = {  # where each mismatched prompt left the reference
            i: next((j for j, (x, y) in enumerate(zip(gens[i].new_ids, refs[i])) if x != y), None)
            for i in bad
        }
        rows.append(
            dict(
                case=name,
                method=method,
                batch_size=bs,
                prompts=len(prompts),
                identical=not bad,
                mismatched_prompts=bad,
                first_divergence=first,
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
    import decode as bench
    import torch
    from torch.profiler import ProfilerActivity, profile

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


class SpeedRun:
    """The speed step: ~1B policy and RM, each lower precision against fp32 and three decoders.

    Units run in order of importance (the first dtype, k = 10 first) and the record is saved after
    each, so a step killed for time still leaves what it measured. A unit is skipped, and listed,
    when the budget left is less than what the same unit took in the first dtype (or, in the
    first dtype, the unit before it).
    """

    def __init__(self, a):
        import decode as bench

        self.bench, self.sizes, self.dev = bench, SIZES[a.mode], device()
        self.clock, self.path = a.clock, a.out / "steps" / "speed.json"  # started before imports
        self.out = dict(
            status="running",
            device=str(self.dev),
            sizes={**self.sizes, "k": KS},
            skipped=[],
            errors=[],
            rows=[],
            batch=[],
            agreement=[],
            floor={},
        )
        self.took: dict[str, float] = {}
        self.last = 0.0  # the previous unit's seconds: the estimate for a unit not yet timed
        self.new = self.sizes["new"]

    def save(self) -> None:
        write_json(self.path, {**self.out, "seconds": round(self.clock.elapsed(), 1)})

    def setup(self, data: Path) -> None:
        """Tokenizer, fp32 models on the device, prompts; fp32 tokens as the reference; fp32 to CPU."""
        from argsfw.decoding import ArgsDecoder
        from argsfw.models import TinySpec

        b, sizes = self.bench, self.sizes
        dialogues = dialogues_of(data)
        spec = TinySpec(arch="llama", **sizes["spec"])
        with self.dev:  # initialise the weights where they run (1B on a CPU takes tens of seconds)
            tok, llm, rm = b.build_models(dialogues[: sizes["tok_texts"]], spec, sizes["vocab"])
        llm, rm = llm.to(self.dev), rm.to(self.dev)  # a no-op unless the context was ignored
        self.tok, self.pad = tok, tok.pad_token_id
        self.batch = b.prompts_of_length(tok, dialogues, PROMPT_TOKENS, sizes["n_batch"])
        self.single = self.batch[: sizes["n_single"]]
        self.out.update(
            vocab=len(tok),
            params=dict(policy=n_params(llm), rm=n_params(rm)),
            prompt_tokens=[len(p) for p in self.batch],
            attn_implementation=llm.config._attn_implementation,
        )
        self.save()
        dec = ArgsDecoder(llm, tok, rm)
        self.ref = {
            k: [b.run_fast(dec, [p], k, self.new)[0][0].new_ids for p in self.single] for k in KS
        }
        self.master = (llm.to("cpu"), rm.to("cpu"))  # only one dtype's copies on the device

    def run_dtype(self, name: str, profile: bool) -> None:
        """Every unit for one dtype: warm-up, floor, then batch 1 and batch N at each k."""
        import torch

        from argsfw.decoding import ArgsDecoder

        b = self.bench
        llm, rm = (copy.deepcopy(m).to(self.dev, getattr(torch, name)) for m in self.master)
        dec = ArgsDecoder(llm, self.tok, rm)
        b.run_fast(dec, self.single[:1], 10, 4)  # warm-up: kernels, allocator, cuBLAS handles
        b.original_args_greedy(llm, rm, self.single[0], 10, 1.0, 4)
        b.run_plain(llm, self.single[0], 4, self.pad)
        reps = self.sizes["floor_reps"]
        self.out["floor"][name] = b.forward_floor(llm, rm, PROMPT_TOKENS + self.new // 2, KS, reps)
        for k in KS:
            for unit in ("compare", "batch"):
                need = self.took.get(f"{unit}{k}", self.last)
                if self.clock.left() < need + 5:  # 5 s to spare for the record and exit
                    self.out["skipped"].append(f"{name} {unit} k={k} (needs ~{need:.0f}s)")
                    continue
                t0 = time.perf_counter()
                if unit == "compare":
                    self.compare(name, dec, k)
                else:
                    self.batched(name, dec, k)
                self.last = time.perf_counter() - t0
                self.took.setdefault(f"{unit}{k}", self.last)
                self.save()
        if profile and self.clock.left() > 10:
            tokens = self.sizes["profile_tokens"]
            try:  # the profiler needs CUPTI on a GPU; its absence must not cost the numbers
                self.out["profile"] = dict(
                    dtype=name, **profile_args(dec, self.single[0], 10, tokens)
                )
            except Exception as e:
                self.out["errors"].append(f"profile: {type(e).__name__}: {e}")
        if self.dev.type == "cuda":
            del llm, rm, dec
            torch.cuda.empty_cache()

    def compare(self, name: str, dec, k: int) -> None:
        """Batch 1: argsfw vs the original structure vs plain greedy; tokens against fp32."""
        r = self.bench.compare(dec, dec.llm, dec.rm, self.single, k, self.new, self.pad)
        self.out["agreement"].append(
            dict(dtype=name, k=k, **agreement(r.pop("tokens"), self.ref[k]))
        )
        self.out["rows"].append(dict(dtype=name, batch=1, new=self.new, **r))

    def batched(self, name: str, dec, k: int) -> None:
        """All N prompts in one batch; gain over batch 1 from the same dtype and k's batch-1 row."""
        n = len(self.batch)
        (_, st), dt, mem = self.bench.peak_timed(
            lambda: self.bench.run_fast(dec, self.batch, k, self.new, batch_size=n)
        )
        one = next((r for r in self.out["rows"] if r["dtype"] == name and r["k"] == k), None)
        self.out["batch"].append(
            dict(
                dtype=name,
                k=k,
                batch=n,
                seconds=dt,
                prompts_per_s=n / dt,
                batch1_prompts_per_s=1 / one["fast_s"] if one else None,
                gain=n / dt * one["fast_s"] if one else None,
                vs_original=n / dt * one["orig_s"] if one else None,
                mem=mem,
                rm_cache=st.rm_cache_bytes_peak,
            )
        )


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def step_speed(a) -> dict:
    run = SpeedRun(a)
    run.setup(a.data)
    for i, name in enumerate(run.sizes["dtypes"]):
        try:  # one dtype's failure (fp16 overflow, a kernel error) is recorded; the next one runs
            run.run_dtype(name, profile=i == 0)
        except Exception as e:
            tb = traceback.format_exc()[-2000:]
            run.out["errors"].append(f"{name}: {type(e).__name__}: {e}\n{tb}")
            run.save()
    out = run.out
    out["status"] = "failed" if out["errors"] and not out["rows"] else "ok"
    if out["status"] == "ok" and (out["skipped"] or out["errors"]):
        out["status"] = "partial"
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
        return dict(
            status="skipped", reason="deepspeed is not installed here (see logs/install.log)"
        )
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
        text = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(
            errors="replace"
        )
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
    # what comes back from the GPU machine is size-limited: the checkpoints are not needed
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    return dict(out, status="ok" if all(checks.values()) else "failed", checks=checks, metrics=m)


# ---------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "step", help=f"one of {', '.join(STEPS)}, several joined by commas (one process), or report"
    )
    ap.add_argument("out", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds this step may take")
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the hh-rlhf folder (default: prepare.sh's copy, else ../shared/data)",
    )
    a = ap.parse_args(argv)
    a.mode = "dry" if a.dry_run else "gpu"
    a.data = a.data or default_data()
    (a.out / "steps").mkdir(parents=True, exist_ok=True)
    (a.out / "logs").mkdir(parents=True, exist_ok=True)
    if a.step == "report":
        from report import report

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
    t0, a.clock = time.perf_counter(), Clock(a.budget)
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
