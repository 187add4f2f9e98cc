"""Predict callbacks: the resumable per-rank writer, a progress bar with rates, throughput logging.

Under DDP, ``Trainer.predict`` returns each rank's rows only; Lightning's answer is a
`BasePredictionWriter`, which `PartFileWriter` is: every rank appends its records to its own
part file and flushes after each batch, so a killed run loses at most the batch in flight.
Merging the parts into ``outputs.jsonl`` happens once all ranks are through (see
`argsfw.predict`), because a rank with an empty shard never runs the predict hooks.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter, Callback, TQDMProgressBar

from argsfw.callbacks.outputs import cut_torn_tail, part_path

log = logging.getLogger(__name__)


class PartFileWriter(BasePredictionWriter):
    """Appends each batch's records to ``outputs.part-rank<R>.jsonl`` and flushes it to disk.

    Also counts, per rank, the records written and skipped (`counts`).
    """

    def __init__(self, run_dir: Path):
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self._file = None
        self.counts = {"written": 0, "skipped": 0}

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Open this rank's part file for appending, first cutting any torn last line."""
        path = part_path(self.run_dir, trainer.global_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_tail(path)
        self._file = path.open("a", encoding="utf-8")

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: list[dict],
        batch_indices,
        batch,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append and flush (and fsync) the batch's records: durable before the next batch starts."""
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prediction)
        self._file.write(lines)
        self._file.flush()
        os.fsync(self._file.fileno())
        for r in prediction:
            self.counts["skipped" if r.get("skipped") else "written"] += 1
        if trainer.received_sigterm:  # a scheduler's preemption, `kill`: stop at a batch's end
            # why here: Lightning's fit and validation loops stop on SIGTERM, its predict loop
            # does not (it would decode every remaining batch first, then exit 0)
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """Close the part file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class _Rates:
    """Running prompts/s and new tokens/s of one rank since the predict loop started."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.prompts = 0
        self.tokens = 0
        self.skipped = 0

    def add(self, records: list[dict]) -> None:
        for r in records:
            if r.get("skipped"):
                self.skipped += 1
            else:
                self.prompts += 1
                self.tokens += int(r.get("n_new_tokens", 0))

    def as_dict(self) -> dict[str, float]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return {
            "prompts_per_s": self.prompts / dt,
            "tokens_per_s": self.tokens / dt,
            "prompts": float(self.prompts),
            "skipped": float(self.skipped),
        }


class DecodeProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar with this rank's prompts/s and tokens/s in the postfix."""

    def on_predict_start(self, trainer, pl_module) -> None:
        super().on_predict_start(trainer, pl_module)
        self._rates = _Rates()

    def on_predict_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._rates.add(outputs or [])
        r = self._rates.as_dict()
        if self.predict_progress_bar is not None:
            self.predict_progress_bar.set_postfix(
                {"prompts/s": f"{r['prompts_per_s']:.2f}", "tok/s": f"{r['tokens_per_s']:.1f}"},
                refresh=False,
            )


class ThroughputLogger(Callback):
    """Logs rank 0's decode throughput to the experiment logger every `every_n_batches` batches.

    Lightning's ``self.log`` is not available in ``predict_step``, so this writes to the
    logger directly (rank 0 only, as Lightning's loggers do).
    """

    def __init__(self, every_n_batches: int = 10):
        self.every = max(int(every_n_batches), 1)
        self.rates = _Rates()

    def on_predict_start(self, trainer, pl_module) -> None:
        self.rates = _Rates()

    def on_predict_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.rates.add(outputs or [])
        if (
            trainer.logger is not None
            and trainer.is_global_zero
            and (batch_idx + 1) % self.every == 0
        ):
            trainer.logger.log_metrics(
                {f"predict/{k}": v for k, v in self.rates.as_dict().items()}, step=batch_idx
            )


def log_samples_table(logger: Any, records: list[dict], n: int) -> None:
    """Log the first `n` records as a table of sample generations (W&B only; others skip it)."""
    if logger is None or n <= 0 or not records or not hasattr(logger, "log_table"):
        return
    cols = ["id", "prompt", "result", "n_new_tokens", "reward"]
    rows = [[r.get(c) for c in cols] for r in records[:n]]
    try:
        logger.log_table(key="predict/samples", columns=cols, data=rows)
    except Exception as exc:  # a logging failure must not fail a finished run
        log.warning("could not log the sample table: %s", exc)
