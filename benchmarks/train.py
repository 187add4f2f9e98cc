"""Training throughput: tiny SFT and RM through Lightning vs a plain PyTorch loop, same batches.

``python benchmarks/train.py [--steps 30] [--warmup 5]``

Both paths train the same tiny model from the same initial weights on the same pre-collated
batches with the stage's own optimizer and schedule (`configure_optimizers`); the Lightning path
is `lightning.Trainer.fit` with argsfw's callbacks (checkpointing off, no logger, no
validation), the plain path is ``loss.backward(); clip; step; schedule``. Reports tokens/s and
the Lightning / plain ratio (overhead = 1 - ratio). Single process, CPU.
"""

from __future__ import annotations

import argparse
import json
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from argsfw.config.compose import compose
from argsfw.config.run_dir import RunDir
from argsfw.modules import build_stage


def _batches(parts, n: int) -> list[dict]:
    parts.datamodule.setup("fit")
    it = iter(parts.datamodule.train_dataloader())
    return [next(it) for _ in range(n)]


def _tokens(batch: dict) -> int:
    return int(sum(v.sum() for k, v in batch.items() if k.endswith("attention_mask")))


def _loss(module, batch: dict) -> torch.Tensor:
    # training_step minus self.log (which needs a Trainer)
    if hasattr(module, "_rewards"):
        from argsfw.rlhf.pairwise import bradley_terry_loss

        return bradley_terry_loss(*module.rewards(batch), module.margin)
    return module._loss(batch)


def _plain(parts, batches, clip: float) -> float:
    from argsfw.modules._optim import adamw_with_schedule

    module = parts.module.train()
    opt_cfg = adamw_with_schedule(module.model, module.optim, len(batches))
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    start = time.perf_counter()
    for batch in batches:
        loss = _loss(module, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


class _Timer(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def _lightning(parts, batches, clip: float) -> float:
    from argsfw.trainer import FiniteLossGuard, ValidateAtMaxSteps

    timer = _Timer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=len(batches),
        max_epochs=1,
        gradient_clip_val=clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[FiniteLossGuard(), ValidateAtMaxSteps(), timer],
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False)  # the same pre-collated batches
    trainer.fit(parts.module, train_dataloaders=loader)
    return timer.seconds


def bench(recipe: str, steps: int, warmup: int, overrides: list[str]) -> dict:
    """Tokens/s of one recipe's stage, plain loop vs Lightning (after `warmup` untimed steps each)."""
    job = compose(
        [f"recipe={recipe}", "logger.name=none", f"trainer.max_steps={steps}", *overrides]
    )
    results = {}
    for name, run in (("plain", _plain), ("lightning", _lightning), ("plain_again", _plain)):
        L.seed_everything(0, verbose=False)
        parts = build_stage(job, RunDir(__import__("pathlib").Path("/tmp/argsfw_bench")))
        batches = _batches(parts, warmup + steps)
        _plain(parts, batches[:warmup], 1.0)  # warm up allocator and kernels
        seconds = run(parts, batches[warmup:], 1.0)
        results[name] = sum(_tokens(b) for b in batches[warmup:]) / seconds
    plain = (results["plain"] + results["plain_again"]) / 2  # bracket Lightning in time
    return {
        "recipe": recipe,
        "steps": steps,
        "plain_tok_s": round(plain, 1),
        "lightning_tok_s": round(results["lightning"], 1),
        "ratio": round(results["lightning"] / plain, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    for recipe, extra in (("tiny_sft", []), ("tiny_rm", [])):
        print(json.dumps(bench(recipe, args.steps, args.warmup, extra)))


if __name__ == "__main__":
    main()
