"""Decoding speed and memory, side by side in one run on the same tiny models and real HH-RLHF prompts.

    .venv/bin/python benchmarks/decode.py            # full run (~6-10 min on 2 CPU cores)
    .venv/bin/python benchmarks/decode.py --quick    # ~1-2 min smoke run
    .venv/bin/python benchmarks/decode.py --scorers  # (g) only: the three scorers side by side
    .venv/bin/python benchmarks/decode.py --smollm [--rm RUN]  # the real-model section (real_model.py)

Compares, at w=1 and 128 new tokens (32 for the 1k-token prompts; EOS ignored so every run makes
the same number of tokens):
  (a) argsfw's engine vs a re-implementation of the ORIGINAL ARGS code's cost structure (batch 1;
      the RM reads the prompt k times on step one, its KV cache is held k-fold and reordered by
      copy every step) at k=10 and k=40, for ~300-token and ~1k-token prompts;
  (b) argsfw's ARGS-greedy vs plain greedy `model.generate` of the policy alone;
  (c) 16 prompts decoded as one batch vs one at a time;
  (d) the RM's KV-cache bytes at k=10 vs k=40;
  (f) the token-level-RM methods (token-rm, genarm-greedy, genarm) beside ARGS-greedy and plain
      greedy, per prompt interleaved (``--only token-level`` runs this part alone);
  (g) what each reward scorer costs (tree, expanded, full: what a probe fallback costs), k=10;
and the "two forwards per token" floor: one cached policy step vs one cached RM forward of k tokens.
Models: Llama, hidden 256, 4 layers, vocab 8k, random weights (speed does not depend on what the
weights say), policy and RM of the same size, tokenizer trained on the HH-RLHF text.
Needs ../shared/data (the project's shared data folder); exits with a message when it is absent.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from argsfw.decoding import ArgsDecoder, decode_settings
from argsfw.decoding.accounting import cache_bytes
from argsfw.models import (
    TinySpec,
    build_tiny_policy,
    build_tiny_reward_model,
    build_tiny_token_reward_model,
    train_tokenizer,
)

DATA = (
    Path(
        os.environ.get("ARGSFW_SHARED_DATA")
        or Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    / "hh-rlhf"
)
FILES = ("helpful-base/test-part-a.jsonl.gz", "harmless-base/test.jsonl.gz")


# ---------------------------------------------------------------------------- data and models
def load_dialogues(root: Path = DATA) -> list[str]:
    """HH-RLHF `chosen` dialogues from ``root`` (default: the shared data folder; exits if absent)."""
    if not all((root / f).is_file() for f in FILES):
        sys.exit(
            f"benchmark skipped: HH-RLHF test files not found under {root} (the project's ../shared/data)"
        )
    out = []
    for f in FILES:
        with gzip.open(root / f, "rt") as fh:
            out.extend(json.loads(line)["chosen"] for line in fh)
    return out


def prompt_of(dialogue: str) -> str:
    """Everything up to and including the last "\\n\\nAssistant:" (the HH-RLHF prompt)."""
    cut = dialogue.rfind("\n\nAssistant:")
    return dialogue[: cut + len("\n\nAssistant:")] if cut >= 0 else dialogue


def prompts_of_length(tok, dialogues: list[str], target: int, n: int) -> list[list[int]]:
    """``n`` real prompts of about ``target`` tokens.

    Up to 400 tokens: single HH prompts within +-10% of ``target``. Longer: whole dialogues
    followed by one more prompt (a long multi-conversation context), cut at the start to
    ``target`` tokens with the BOS token kept.
    """
    out: list[list[int]] = []
    if target <= 400:
        for d in dialogues:
            ids = tok(prompt_of(d)).input_ids
            if abs(len(ids) - target) <= target // 10:
                out.append(ids)
            if len(out) == n:
                return out
    else:
        context = ""
        for d in dialogues:
            ids = tok(context + prompt_of(d)).input_ids
            if len(ids) >= target:
                out.append([ids[0]] + ids[len(ids) - target + 1 :])
                context = ""
                if len(out) == n:
                    return out
            else:
                context += d
    raise SystemExit(f"could not find {n} prompts of ~{target} tokens")


# Policy and RM of the benchmark: Llama, hidden 256, 4 layers, MLP 1024 (see README.md).
BENCH_SPEC = TinySpec(
    arch="llama",
    hidden_size=256,
    num_layers=4,
    num_heads=4,
    intermediate_size=1024,
    max_position_embeddings=2048,
)


def build_models(texts: list[str], spec: TinySpec = BENCH_SPEC, vocab_size: int = 8000):
    """A BPE tokenizer trained on ``texts``, a random policy (seed 0) and a random RM (seed 1) of ``spec``.

    Built on torch's current default device (``with torch.device("cuda"):`` initialises on the GPU).
    """
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    return tok, build_tiny_policy(tok, spec, seed=0), build_tiny_reward_model(tok, spec, seed=1)


# ---------------------------------------------------------------------------- original cost structure
@torch.inference_mode()
def original_args_greedy(
    llm, rm, prompt: list[int], k: int, w: float, max_new: int
) -> tuple[list[int], int]:
    """ARGS-greedy with the original code's cost structure; returns (new tokens, peak RM cache bytes).

    Batch 1. Step one: the RM reads k full rows ``prompt + candidate`` (the prompt k times) and
    keeps a k-row KV cache. Every step after: the cache is reordered to k copies of the chosen
    row (an index_select copy of k*L positions per layer), and the k candidates are fed as k rows
    of one token against it. The policy decodes with its own batch-1 cache.
    """
    device = llm.device
    x = torch.tensor([prompt], device=device)
    llm_cache, rm_cache = DynamicCache(config=llm.config), DynamicCache(config=rm.config)
    logits = (
        llm(input_ids=x, cache=llm_cache, use_cache=True, logits_to_keep=1).logits[0, -1].float()
    )
    new, peak = [], 0
    for step in range(max_new):
        top, cands = logits.topk(k)  # [k]
        if step == 0:
            rows = torch.cat(
                [x.expand(k, -1), cands[:, None]], dim=1
            )  # [k, L+1]: prompt read k times
            r = rm(input_ids=rows, cache=rm_cache, use_cache=True).logits[:, 0]
        else:
            r = rm(input_ids=cands[:, None], cache=rm_cache, use_cache=True).logits[:, 0]
        peak = max(peak, cache_bytes(rm_cache))
        best = int((top + w * r.float()).argmax())
        tok = int(cands[best])
        new.append(tok)
        rm_cache.reorder_cache(torch.full((k,), best, device=device))  # k copies of the chosen row
        if step < max_new - 1:
            logits = (
                llm(
                    input_ids=torch.tensor([[tok]], device=device),
                    cache=llm_cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                .logits[0, -1]
                .float()
            )
    return new, peak


# ---------------------------------------------------------------------------- the two-forward floor
@torch.inference_mode()
def forward_floor(llm, rm, length: int, ks=(10, 40), reps: int = 40) -> dict:
    """Median ms of one cached policy step (1 token + LM head) and one cached RM forward of n tokens.

    ARGS needs one of each per token, so ``(llm + rm_k) / llm`` is the floor of "ARGS-greedy
    time / plain greedy time" for batch 1, before any engine overhead.
    """
    device = llm.device
    x = torch.randint(5, llm.config.vocab_size, (1, length), device=device)

    def median(model, n: int, lm: bool) -> float:
        cache = DynamicCache()
        (model if lm else model.model)(input_ids=x, cache=cache, use_cache=True)
        ids = torch.randint(5, llm.config.vocab_size, (1, n), device=device)
        mask = torch.zeros(1, 1, n, length + n, device=device, dtype=model.dtype)
        pos = torch.full((1, n), length, device=device)
        times = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            if lm:
                model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
            else:
                model.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=pos,
                    cache=cache,
                    use_cache=True,
                )
            sync()
            times.append(time.perf_counter() - t0)
            cache.crop(-n)
        return sorted(times)[reps // 2] * 1e3

    out = {"llm_1": median(llm, 1, True), "rm_1": median(rm, 1, False)}
    for k in ks:
        out[f"rm_{k}"] = median(rm, k, False)
    return out


# ---------------------------------------------------------------------------- timing helpers
def sync() -> None:
    """Wait for queued CUDA work, so a wall-clock reading covers it (no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def peak_timed(fn):
    """`timed` plus the CUDA peak allocated bytes during ``fn`` (None on CPU)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
    out, dt = timed(fn)
    return out, dt, (torch.cuda.max_memory_allocated() if cuda else None)


def run_fast(dec, prompts, k, max_new, batch_size=1, method="args-greedy", **kw):
    """One engine call with ``method`` at k candidates, EOS ignored (every run makes ``max_new`` tokens)."""
    s = decode_settings(
        method=method,
        weight=1.0,
        topk=k,
        max_new_tokens=max_new,
        stop_at_eos=False,
        batch_size=batch_size,
        lenient=True,  # one set of knobs for every method: each reads its own
        **kw,
    )
    return dec.generate_ids(prompts, s)


# (f) name -> (decoder key, method, k, settings); decoders: "seq" (sequence RM), "token", "arm"
TOKEN_LEVEL_ROWS = {
    "engine greedy": ("seq", "greedy", 10, {}),
    "ARGS-greedy k=10": ("seq", "args-greedy", 10, {}),
    "ARGS-greedy k=40": ("seq", "args-greedy", 40, {}),
    "token-rm k=10": ("token", "token-rm", 10, {}),
    "token-rm k=40": ("token", "token-rm", 40, {}),
    "genarm-greedy": ("arm", "genarm-greedy", 10, {}),
    "genarm (sampling)": ("arm", "genarm", 10, dict(alpha=1.0, temperature=0.5)),
    "genarm-greedy, ARM of hidden 128": ("small_arm", "genarm-greedy", 10, {}),
}
# GenARM's weak-to-strong setting: an ARM smaller than the policy (same vocabulary and depth)
SMALL_ARM_SPEC = TinySpec(
    arch="llama",
    hidden_size=128,
    num_layers=4,
    num_heads=4,
    intermediate_size=512,
    max_position_embeddings=2048,
)


def compare_token_level(decs, llm, prompts, max_new, pad_id, rounds: int = 3) -> dict:
    """Seconds per prompt of plain greedy and each `TOKEN_LEVEL_ROWS` method, prompt by prompt interleaved.

    ``rounds`` rounds in alternating orders; each (method, prompt) keeps its fastest round, the
    estimate least disturbed by other jobs on a shared machine (as `timeit` does). Also returns
    each method's RM tokens read per generated token.
    """
    names = ["plain greedy", *TOKEN_LEVEL_ROWS]
    best = {(name, i): float("inf") for name in names for i in range(len(prompts))}
    rm_tokens = {}
    for rnd in range(rounds):
        for i, p in enumerate(prompts):
            for name in names if rnd % 2 == 0 else names[::-1]:
                if name == "plain greedy":
                    dt = timed(lambda p=p: run_plain(llm, p, max_new, pad_id))[1]
                    best[name, i] = min(best[name, i], dt)
                    continue
                key, method, k, kw = TOKEN_LEVEL_ROWS[name]
                (gens, st), dt = timed(
                    lambda p=p, key=key, method=method, k=k, kw=kw: run_fast(
                        decs[key], [p], k, max_new, method=method, **kw
                    )
                )
                best[name, i] = min(best[name, i], dt)
                prefill = len(p)
                rm_tokens[name] = (st.rm_tokens_in - prefill * (st.rm_forwards > 0)) / st.new_tokens
    n = len(prompts)
    return {
        name: (sum(best[name, i] for i in range(n)) / n, rm_tokens.get(name, 0.0)) for name in names
    }


def print_token_level(res: dict, L: int, max_new: int, floor: dict | None) -> None:
    plain, engine = res["plain greedy"][0], res["engine greedy"][0]
    args = {k: res[f"ARGS-greedy k={k}"][0] for k in (10, 40)}
    print(
        f"\n| method (L~{L}, {max_new} new tokens, batch 1) | s/prompt | / plain greedy (generate) | "
        "/ engine greedy | ARGS-greedy at the same k / this | RM tokens read per new token (after the prompt) |"
    )
    print("|---|---|---|---|---|---|")
    for name, (sec, rm_tok) in res.items():
        k = 40 if name.endswith("k=40") else 10
        print(
            f"| {name} | {sec:.2f} | {sec / plain:.2f}x | {sec / engine:.2f}x | "
            f"{args[k] / sec:.2f}x | {rm_tok:.2f} |"
        )
    if floor:
        # A token-level RM of the policy's shape costs one policy step (genarm reads its whole
        # head); token-rm runs its backbone only (the rm_1 forward) plus k dot products.
        llm_1, rm_1 = floor["llm_1"], floor["rm_1"]
        print(
            f"floor (policy step {llm_1:.1f} ms, RM backbone step {rm_1:.1f} ms): genarm 2.00x plain "
            f"greedy, token-rm {(llm_1 + rm_1) / llm_1:.2f}x; ARGS-greedy k=10 "
            f"{(llm_1 + floor['rm_10']) / llm_1:.2f}x"
        )


def run_plain(llm, prompt, max_new, pad_id):
    ids = torch.tensor([prompt], device=llm.device)
    return llm.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new,
        min_new_tokens=max_new,
        pad_token_id=pad_id,
    )


def compare(dec, llm, rm, prompts, k, max_new, pad_id) -> dict:
    """Per prompt, interleaved so load changes hit all three alike: fast, original structure, plain greedy.

    Besides the times, returns argsfw's new tokens per prompt (``tokens``) and, on CUDA, each
    decoder's peak allocated bytes (``mem_fast``/``mem_orig``/``mem_plain``, None on CPU).
    """
    t_fast = t_orig = t_plain = 0.0
    same, cache_fast, cache_orig, tokens = True, 0, 0, []
    mem = {"fast": None, "orig": None, "plain": None}

    def top(name, m):
        mem[name] = m if mem[name] is None else max(mem[name], m)

    for p in prompts:
        (gens, st), dt, m = peak_timed(lambda p=p: run_fast(dec, [p], k, max_new))
        t_fast += dt
        top("fast", m)
        tokens.append(gens[0].new_ids)
        cache_fast = max(cache_fast, st.rm_cache_bytes_peak)
        (orig, peak), dt, m = peak_timed(
            lambda p=p: original_args_greedy(llm, rm, p, k, 1.0, max_new)
        )
        t_orig += dt
        top("orig", m)
        cache_orig = max(cache_orig, peak)
        same &= orig == gens[0].new_ids
        _, dt, m = peak_timed(lambda p=p: run_plain(llm, p, max_new, pad_id))
        t_plain += dt
        top("plain", m)
    n = len(prompts)
    return dict(
        k=k,
        L=round(sum(map(len, prompts)) / n),
        fast_s=t_fast / n,
        orig_s=t_orig / n,
        plain_s=t_plain / n,
        speedup=t_orig / t_fast,
        vs_plain=t_fast / t_plain,
        same_tokens=same,
        cache_fast=cache_fast,
        cache_orig=cache_orig,
        tokens=tokens,
        **{f"mem_{name}": v for name, v in mem.items()},
    )


def compare_scorers(dec, prompts, k, max_new) -> list[dict]:
    """(g) The same prompts under each scorer, interleaved prompt by prompt; tokens must agree."""
    names = ("tree", "expanded", "full")
    total = {n: 0.0 for n in names}
    stats, tokens = {}, {n: [] for n in names}
    for p in prompts:
        for n in names:
            s = decode_settings(
                weight=1.0, topk=k, max_new_tokens=max_new, stop_at_eos=False, scorer=n
            )
            (gens, st), dt = timed(lambda s=s, p=p: dec.generate_ids([p], s))
            total[n] += dt
            tokens[n].append(gens[0].new_ids)
            stats[n] = st if n not in stats else stats[n].merge(st)
    return [
        dict(
            scorer=n,
            s=total[n] / len(prompts),
            vs_tree=total[n] / total["tree"],
            rm_tokens=stats[n].rm_tokens_in / stats[n].new_tokens,
            cache=stats[n].rm_cache_bytes_peak,
            same=tokens[n] == tokens["tree"],
        )
        for n in names
    ]


def print_scorers(rows: list[dict], k: int, length: int, max_new: int) -> None:
    print(
        f"\n| scorer (k={k}, L~{length}, {max_new} new) | s/prompt | vs tree | RM tokens read per new token | RM cache peak | same tokens as tree |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['scorer']} | {r['s']:.2f} | {r['vs_tree']:.2f}x | {r['rm_tokens']:.1f} | "
            f"{r['cache'] / 2**20:.2f} MiB | {'yes' if r['same'] else 'NO'} |",
            flush=True,
        )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="fewer prompts and 32 new tokens (~1-2 min)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is steadiest on a shared machine)",
    )
    ap.add_argument(
        "--only",
        choices=("all", "token-level"),
        default="all",
        help="token-level: only (f), the token-level-RM methods vs ARGS-greedy and plain greedy",
    )
    ap.add_argument(
        "--scorers", action="store_true", help="only (g): tree vs expanded vs full scorer"
    )
    ap.add_argument(
        "--smollm",
        action="store_true",
        help="only the real-model section: SmolLM2-135M-Instruct policy and RM (real_model.py)",
    )
    ap.add_argument("--rm", help="--smollm: a trained SmolLM2 RM (default: a fresh head)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smollm:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import real_model

        real_model.run(args, sys.modules[__name__])
        return
    max_new = 32 if args.quick else 128
    # why 32 tokens at 1k: the original structure copies a k*1k-position cache every step there
    # (~2 s per token at k=40 on this machine), so 128 tokens would take the whole time budget
    max_new_long = 16 if args.quick else 32
    n_short, n_long, n_batch = (1, 1, 8) if args.quick else (3, 1, 16)

    t_start = time.perf_counter()
    dialogues = load_dialogues()
    tok, llm, rm = build_models(dialogues)
    dec = ArgsDecoder(llm, tok, rm)
    short = prompts_of_length(tok, dialogues, 300, max(n_short, n_batch))
    long = prompts_of_length(tok, dialogues, 1000, n_long)
    print(
        f"# decode benchmark: max_new={max_new} threads={args.threads} cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f} (1-min avg at start)"
    )
    if args.scorers:
        run_fast(dec, short[:1], 10, 4)  # warm-up
        print_scorers(compare_scorers(dec, short[:n_short], 10, max_new), 10, 300, max_new)
        print(
            f"\ntotal wall time {time.perf_counter() - t_start:.0f}s, load at end {os.getloadavg()[0]:.1f}"
        )
        return
    run_fast(dec, short[:1], 10, 4)  # warm-up
    original_args_greedy(llm, rm, short[0], 10, 1.0, 4)
    run_plain(llm, short[0], 4, tok.pad_token_id)

    floor = forward_floor(llm, rm, 300 + max_new // 2)
    # (f) token-level RMs of the policy's shape (random weights, marked as the fit stages do)
    decs = {
        "seq": dec,
        "token": ArgsDecoder(llm, tok, build_tiny_token_reward_model(tok, BENCH_SPEC, 3, "token")),
        "arm": ArgsDecoder(llm, tok, build_tiny_token_reward_model(tok, BENCH_SPEC, 4, "arm")),
        "small_arm": ArgsDecoder(
            llm, tok, build_tiny_token_reward_model(tok, SMALL_ARM_SPEC, 5, "arm")
        ),
    }
    for key, method, k, kw in TOKEN_LEVEL_ROWS.values():
        run_fast(decs[key], short[:1], k, 4, method=method, **kw)  # warm-up
    token_level = compare_token_level(decs, llm, short[:n_short], max_new, tok.pad_token_id)
    L = round(sum(map(len, short[:n_short])) / n_short)
    print_token_level(token_level, L, max_new, floor)
    if args.only == "token-level":
        print(
            f"\ntotal wall time {time.perf_counter() - t_start:.0f}s, load at end {os.getloadavg()[0]:.1f}"
        )
        return
    print(
        f"forward floor at L~{300 + max_new // 2} (median ms): policy step {floor['llm_1']:.1f}, RM with 1 token "
        f"{floor['rm_1']:.1f}, 10 tokens {floor['rm_10']:.1f}, 40 tokens {floor['rm_40']:.1f} -> floor of "
        f"ARGS/plain: k=10 {(floor['llm_1'] + floor['rm_10']) / floor['llm_1']:.2f}x, "
        f"k=40 {(floor['llm_1'] + floor['rm_40']) / floor['llm_1']:.2f}x",
        flush=True,
    )

    rows = []
    for prompts, n_new in ((short[:n_short], max_new), (long, max_new_long)):
        for k in (10, 40):
            rows.append(compare(dec, llm, rm, prompts, k, n_new, tok.pad_token_id))
            rows[-1]["new"] = n_new
            r = rows[-1]
            print(
                f"L~{r['L']:4d} new={n_new} k={k:2d}: fast {r['fast_s']:.2f}s  original-structure {r['orig_s']:.2f}s  "
                f"plain greedy {r['plain_s']:.2f}s  | speedup {r['speedup']:.2f}x  fast/plain {r['vs_plain']:.2f}x  "
                f"same tokens: {r['same_tokens']}  RM cache {r['cache_fast'] / 2**20:.2f} MiB vs {r['cache_orig'] / 2**20:.2f} MiB",
                flush=True,
            )

    batch = short[:n_batch]
    t_b = t_1 = 0.0
    for r in range(2):  # two rounds in alternating order, so load changes hit both alike
        for mode in ("batch", "single") if r == 0 else ("single", "batch"):
            size = n_batch if mode == "batch" else 1
            _, dt = timed(lambda size=size: run_fast(dec, batch, 10, max_new, batch_size=size))
            if mode == "batch":
                t_b += dt / 2
            else:
                t_1 += dt / 2
    orig_pps = 1.0 / next(r["orig_s"] for r in rows if r["k"] == 10)
    print(
        f"batching k=10, {n_batch} prompts: batch {n_batch} {n_batch / t_b:.2f} prompts/s, one at a time "
        f"{n_batch / t_1:.2f} prompts/s -> {t_1 / t_b:.2f}x; vs original structure {n_batch / t_b / orig_pps:.2f}x"
    )
    k10 = next(r for r in rows if r["k"] == 10)
    k40 = next(r for r in rows if r["k"] == 40)
    print(
        f"RM cache at L~{k10['L']}: k=10 {k10['cache_fast']} B, k=40 {k40['cache_fast']} B "
        f"(ratio {k40['cache_fast'] / k10['cache_fast']:.2f}); original structure {k10['cache_orig']} B vs {k40['cache_orig']} B"
    )

    # (e) an RM with its own tokenizer: what detokenize + re-tokenize per candidate costs
    rm_tok = train_tokenizer(dialogues[::2], vocab_size=6000)
    spec = BENCH_SPEC
    cross = ArgsDecoder(llm, tok, build_tiny_reward_model(rm_tok, spec, seed=2), rm_tok)
    t_shared = t_cross = 0.0
    for p in short[:n_short]:
        t_shared += timed(lambda p=p: run_fast(dec, [p], 10, max_new))[1]
        (_, st_x), dt = timed(lambda p=p: run_fast(cross, [p], 10, max_new))
        t_cross += dt
    print(
        f"cross-tokenizer RM (k=10, L~300): {t_cross / n_short:.2f}s/prompt vs shared tokenizer "
        f"{t_shared / n_short:.2f}s/prompt -> {t_cross / t_shared:.2f}x; RM tokens read per new token "
        f"{st_x.rm_tokens_in / st_x.new_tokens:.1f} (shared: 10 candidates)"
    )

    scorer_rows = compare_scorers(dec, short[:n_short], 10, max_new)

    print(
        "\n| prompt tokens | new tokens | k | argsfw s/prompt | original-structure s/prompt | speedup | plain greedy s/prompt | argsfw / plain | same tokens | RM cache argsfw | RM cache original |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['L']} | {r['new']} | {r['k']} | {r['fast_s']:.2f} | {r['orig_s']:.2f} | {r['speedup']:.2f}x | {r['plain_s']:.2f} | "
            f"{r['vs_plain']:.2f}x | {'yes' if r['same_tokens'] else 'NO'} | {r['cache_fast'] / 2**20:.2f} MiB | {r['cache_orig'] / 2**20:.2f} MiB |"
        )
    print(
        f"\n| batching (k=10, ~300-token prompts) | prompts/s |\n|---|---|\n| {n_batch} one at a time | {n_batch / t_1:.2f} |\n"
        f"| {n_batch} as one batch | {n_batch / t_b:.2f} ({t_1 / t_b:.2f}x) |\n| original structure, batch 1 | {orig_pps:.2f} |"
    )
    print_scorers(scorer_rows, 10, 300, max_new)
    print(
        f"\ntotal wall time {time.perf_counter() - t_start:.0f}s, load at end {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
