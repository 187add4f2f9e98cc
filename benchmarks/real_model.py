"""The SmolLM2 section of the decode benchmark: a real pretrained policy and a reward model of the
same backbone, on real HH-RLHF prompts rendered with the model's chat template.

    .venv/bin/python benchmarks/decode.py --smollm [--rm runs/smollm_hh_rm] [--quick]

Side by side in one run, prompt by prompt interleaved (batch 1, ~300-token chat prompts, EOS
ignored so every decoder makes the same number of tokens):
  argsfw ARGS-greedy vs the ORIGINAL code's cost structure vs plain greedy ``generate``, k = 10
  and 40; the two-forward floor (one cached policy step + one cached RM forward of k tokens);
  and 16 prompts as one batch vs one at a time at k = 10.
The RM is ``--rm`` (a trained SmolLM2 RM run) or, without it, SmolLM2's backbone under a fresh
scalar head: speed does not depend on what the head learned.
"""

from __future__ import annotations

import os
import time

import torch

NAME = "smollm2-135m-instruct"


def chat_prompts(tok, dialogues: list[str], target: int, n: int, prompt_of) -> list[list[int]]:
    """``n`` real HH prompts, chat-rendered, of ``target`` tokens within +-10%."""
    from argsfw.data.chat import render_prompt

    out = []
    for d in dialogues:
        ids = tok(render_prompt(tok, prompt_of(d)), add_special_tokens=False).input_ids
        if abs(len(ids) - target) <= target // 10:
            out.append(ids)
            if len(out) == n:
                return out
    raise SystemExit(f"could not find {n} chat prompts of ~{target} tokens")


def load_models(rm_spec: str | None):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from argsfw.models.paths import resolve_model_path

    path = resolve_model_path(f"packaged:{NAME}")
    tok = AutoTokenizer.from_pretrained(path)
    llm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch.manual_seed(1)
    rm_path = resolve_model_path(rm_spec) if rm_spec else path
    rm = AutoModelForSequenceClassification.from_pretrained(
        rm_path, dtype=torch.float32, num_labels=1
    ).eval()
    rm.config.pad_token_id = tok.pad_token_id
    return tok, llm, rm


def run(args, bench) -> None:
    """``bench`` is the decode benchmark module (its timing helpers and the original structure)."""
    from argsfw.decoding import ArgsDecoder

    t_start = time.perf_counter()
    max_new = 16 if args.quick else 32
    n_single, n_batch = (1, 4) if args.quick else (2, 16)
    dialogues = bench.load_dialogues()
    tok, llm, rm = load_models(args.rm)
    dec = ArgsDecoder(llm, tok, rm)
    prompts = chat_prompts(tok, dialogues, 300, max(n_single, n_batch), bench.prompt_of)
    print(
        f"# SmolLM2 decode benchmark: policy {NAME}, RM {args.rm or 'SmolLM2 + fresh head'}, "
        f"max_new={max_new} threads={args.threads} cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f} (1-min avg at start)",
        flush=True,
    )
    bench.run_fast(dec, prompts[:1], 10, 2)  # warm-up
    bench.original_args_greedy(llm, rm, prompts[0], 10, 1.0, 2)
    floor = bench.forward_floor(llm, rm, 300 + max_new // 2, reps=10)
    rows = []
    for k in (10, 40):
        r = bench.compare(dec, llm, rm, prompts[:n_single], k, max_new, tok.pad_token_id)
        rows.append(r)
        f = (floor["llm_1"] + floor[f"rm_{k}"]) / floor["llm_1"]
        print(
            f"k={k}: argsfw {r['fast_s']:.2f}s/prompt, original structure {r['orig_s']:.2f}s, "
            f"plain greedy {r['plain_s']:.2f}s | speedup {r['speedup']:.2f}x, argsfw/plain "
            f"{r['vs_plain']:.2f}x, two-forward floor {f:.2f}x -> argsfw/floor "
            f"{r['vs_plain'] / f:.2f}x, same tokens {r['same_tokens']}",
            flush=True,
        )
    batch = prompts[:n_batch]
    t_b = t_1 = 0.0
    for rnd in range(2):
        for mode in ("batch", "single") if rnd == 0 else ("single", "batch"):
            size = n_batch if mode == "batch" else 1
            _, dt = bench.timed(
                lambda size=size: bench.run_fast(dec, batch, 10, max_new, batch_size=size)
            )
            t_b, t_1 = (t_b + dt / 2, t_1) if mode == "batch" else (t_b, t_1 + dt / 2)
    print(
        f"\n| SmolLM2, L~{rows[0]['L']}, {max_new} new, batch 1 | k | argsfw s/prompt | original "
        "structure | speedup | plain greedy | argsfw / plain | floor (policy + RM_k) / policy | "
        "argsfw / floor | same tokens |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = (floor["llm_1"] + floor[f"rm_{r['k']}"]) / floor["llm_1"]
        print(
            f"| | {r['k']} | {r['fast_s']:.2f} | {r['orig_s']:.2f} | {r['speedup']:.2f}x | "
            f"{r['plain_s']:.2f} | {r['vs_plain']:.2f}x | {f:.2f}x | {r['vs_plain'] / f:.2f}x | "
            f"{'yes' if r['same_tokens'] else 'NO'} |"
        )
    print(
        f"\nbatching k=10, {n_batch} prompts: batch {n_batch} {n_batch / t_b:.3f} prompts/s, one at "
        f"a time {n_batch / t_1:.3f} prompts/s -> {t_1 / t_b:.2f}x"
    )
    print(
        f"floor (median ms): policy step {floor['llm_1']:.1f}, RM 10 tokens {floor['rm_10']:.1f}, "
        f"40 tokens {floor['rm_40']:.1f}"
    )
    print(
        f"\ntotal wall time {time.perf_counter() - t_start:.0f}s, load at end {os.getloadavg()[0]:.1f}"
    )
