"""What the re-read/FLOPs ledger costs: decoding with it and with its walks stubbed out, side by side.

    python benchmarks/ledger_overhead.py [--run runs/tiny_pipeline] [--reps 6]

Needs a finished ``make demo`` run (its SFT policy, RM and the greedy row's prompts). The tiny
models are the worst case: a decoding step takes about a millisecond, so the ledger's Python
work per computed position weighs most there. The two modes alternate run by run, so a change
of machine load hits both; medians are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from argsfw.decoding import ArgsDecoder, decode_settings
    from argsfw.decoding import accounting as acc

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/tiny_pipeline")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(f"{args.run}/sft/hf")
    llm = AutoModelForCausalLM.from_pretrained(f"{args.run}/sft/hf").eval()
    rm = AutoModelForSequenceClassification.from_pretrained(f"{args.run}/rm/hf").eval()
    with open(f"{args.run}/predict/greedy/outputs.jsonl") as f:
        prompts = [json.loads(line)["prompt"] for line in f][: args.prompts]
    dec = ArgsDecoder(llm, tok, rm)
    real = {n: getattr(acc.RowCursors, n) for n in ("read", "branch", "read_whole", "fan", "step")}

    def stub(on: bool) -> None:
        for name, fn in real.items():
            setattr(acc.RowCursors, name, fn if on else (lambda self, row, tokens=None: [0] * 64))

    for kw in (dict(method="args-greedy", topk=10), dict(method="best-of-n", num_samples=8),
               dict(method="greedy")):  # fmt: skip
        s = decode_settings(max_new_tokens=32, batch_size=16, **kw)
        dec.generate(prompts[:16], s)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        for rep in range(args.reps):
            for on in (True, False) if rep % 2 == 0 else (False, True):
                stub(on)
                t0 = time.perf_counter()
                dec.generate(prompts, s)
                times[on].append(time.perf_counter() - t0)
        stub(True)
        a, b = statistics.median(times[True]), statistics.median(times[False])
        print(
            f"{kw['method']}: with the ledger {a:.2f} s, without {b:.2f} s: {100 * (a / b - 1):+.1f}%"
        )


if __name__ == "__main__":
    main()
