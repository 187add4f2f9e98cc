"""The predict stage: a LightningModule around the decoding engine, and its prompt DataModule.

`DecodeModule` loads the policy (and the reward model when the method needs one) from an HF
dir, an argsfw run dir or a hub id, on the strategy's device in ``model.dtype``, and decodes
one batch of prompts per ``predict_step`` with `argsfw.decoding.ArgsDecoder`. It returns one
JSON-ready record per prompt; `argsfw.callbacks.PartFileWriter` writes them.

`PromptsDataModule` serves the prompts still to decode, in dataset order; Lightning shards
them over ranks (an unrepeated `DistributedSampler` for predict, so shards may be uneven and
no prompt is decoded twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from argsfw.callbacks.outputs import read_state
from argsfw.data.datamodules import ListDataset
from argsfw.data.types import PromptRecord
from argsfw.decoding.accounting import DecodeStats
from argsfw.decoding.config import DecodeConfig, sampling_temperature
from argsfw.decoding.registry import get_method
from argsfw.decoding.types import Generation, PromptTooLongError

log = logging.getLogger(__name__)


@dataclass
class DecodeSpec:
    """Everything `DecodeModule` needs: model inputs, dtype, settings and predict options."""

    policy: str
    reward_model: str | None
    settings: DecodeConfig
    dtype: str = "float32"
    too_long: str = "skip"  # skip | truncate | error
    use_rm: bool = True  # load the reward model (the method scores with it)
    token_level_rm: bool = False  # the RM is a causal LM (genarm / token-rm), not a classifier
    cross_tokenizer: bool = False  # the RM's tokenizer differs from the policy's
    label: str = ""


# why a process-wide cache: a sweep or a config file runs several settings in one process
# with the same models; loading a 7B model per setting would dominate the run.
_MODELS: dict[tuple, Any] = {}


def _cached(key: tuple, load):
    if key not in _MODELS:
        _MODELS[key] = load()
    return _MODELS[key]


class DecodeModule(L.LightningModule):
    """Decodes batches of prompts with reward-guided search (or a baseline) in ``predict_step``."""

    def __init__(self, spec: DecodeSpec):
        super().__init__()
        self.spec = spec
        self.found = get_method(spec.settings.method)
        self.method = self.found.name
        self.settings = replace(spec.settings, truncate_prompt=spec.too_long == "truncate")
        if hasattr(self.settings, "temperature"):  # records name the temperature used
            self.settings = replace(self.settings, temperature=sampling_temperature(self.settings))
        self.llm: torch.nn.Module | None = None
        self.rm: torch.nn.Module | None = None
        self.decoder = None

    def configure_model(self) -> None:
        """Load the models once, straight onto the strategy's device.

        Raises `ModelPathError` (argsfw.models) for an unusable model path.
        """
        if self.decoder is not None:
            return
        from argsfw.decoding.engine import ArgsDecoder
        from argsfw.models import load_policy, load_reward_model, load_tokenizer

        device = (
            self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        )
        spec = self.spec
        tok = _cached(("tok", spec.policy), lambda: load_tokenizer(spec.policy, "policy"))
        self.llm = _cached(
            ("llm", spec.policy, spec.dtype, str(device)),
            lambda: load_policy(spec.policy, spec.dtype, device),
        )
        rm_tok = None
        if spec.use_rm:
            rm_tok = _cached(
                ("tok", spec.reward_model),
                lambda: load_tokenizer(spec.reward_model, "reward model"),
            )
            if spec.token_level_rm:
                from argsfw.decoding.implicit import load_token_guide

                load = lambda: load_token_guide(spec.reward_model, spec.dtype, device)  # noqa: E731
            else:
                load = lambda: load_reward_model(  # noqa: E731
                    spec.reward_model, spec.dtype, device, tokenizer=rm_tok
                )
            self.rm = _cached(("rm", spec.reward_model, spec.dtype, str(device)), load)
        self.tokenizer = tok
        self.decoder = ArgsDecoder(self.llm, tok, self.rm, rm_tok if spec.cross_tokenizer else None)

    def on_predict_start(self) -> None:
        """With ``predict.too_long=error``, check every prompt against both contexts before the first batch.

        Raises `PromptTooLongError` (exit code 2) naming the prompt and the model whose context it overflows.
        """
        if self.spec.too_long != "error" or self._trainer is None:
            return
        todo = getattr(self.trainer.datamodule, "todo", [])
        prompts = [r["prompts"] for r in todo if r["ids"] is not None]
        for row in todo:
            if row["ids"] is None:
                continue
            ids = list(self.tokenizer(row["prompts"]).input_ids)
            self.decoder._fit_prompt(row["index"], ids, self.settings)
        log.info("predict.too_long=error: all %d prompts fit both contexts", len(prompts))

    @property
    def scorer(self) -> str | None:
        """The reward scorer this module's decoding runs (None when no reward model is read)."""
        if self.decoder is None or self.rm is None:
            return None
        # a whole-sequence method reads each answer whole (argsfw.decoding.sequence_scorers)
        return "full" if self.found.run is not None else self.decoder.scorer_name(self.settings)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """Decode one batch; returns one record per prompt (decoded or skipped), in batch order."""
        real = [i for i, rid in enumerate(batch["ids"]) if rid is not None]
        if len(real) < len(batch["ids"]):  # placeholder rows of a rank with no prompt of its own
            batch = {k: [v[i] for i in real] for k, v in batch.items()}
        if not real:
            return []
        ids = [list(x) for x in self.tokenizer(batch["prompts"]).input_ids]
        out: list[dict | None] = [None] * len(ids)
        todo = []
        for i, row in enumerate(ids):
            reason = self._over_limit(row) if self.spec.too_long == "skip" else None
            if reason:
                out[i] = skip_record(batch["ids"][i], batch["index"][i], len(row), reason)
            else:
                todo.append(i)
        for i, gen, stats, share in self._generate(todo, ids, batch):
            if gen is None:
                out[i] = skip_record(batch["ids"][i], batch["index"][i], len(ids[i]), "too_long")
            else:
                out[i] = self.make_record(
                    gen, batch["ids"][i], batch["index"][i], len(ids[i]), stats, share
                )
        return [r for r in out if r is not None]

    def _over_limit(self, row: list[int]) -> str | None:
        # why not left to the engine: it raises for the whole batch; skipping needs a per-prompt
        # verdict first (the engine's own check still runs and is the fallback below).
        d, need = self.decoder, len(row) + self.settings.max_new_tokens
        limits = [d.llm_ctx]
        if d.rm is not None and d.shared_tokenizer:
            limits.append(d.rm_ctx)
        return "too_long" if any(ctx is not None and need > ctx for ctx in limits) else None

    def _generate(self, todo: list[int], ids: list[list[int]], batch: dict):
        """Yield ``(i, Generation | None, batch stats, prompts sharing them)`` for rows `todo`."""
        if not todo:
            return
        try:
            gens, stats = self._run(
                [ids[i] for i in todo],
                [batch["prompts"][i] for i in todo],
                [batch["ids"][i] for i in todo],
            )
            for i, g in zip(todo, gens):
                yield i, g, stats, len(todo)
            return
        except PromptTooLongError as exc:
            log.warning(
                "batch has a prompt the engine refuses (%s); decoding its prompts one by one", exc
            )
        for i in todo:  # why: the engine's check is authoritative (e.g. cross-tokenizer RM lengths)
            try:
                gens, stats = self._run([ids[i]], [batch["prompts"][i]], [batch["ids"][i]])
                yield i, gens[0], stats, 1
            except PromptTooLongError:
                yield i, None, None, 1

    def _run(self, ids, prompts, keys) -> tuple[list[Generation], DecodeStats]:
        return self.decoder.generate_ids(ids, self.settings, keys=keys, prompts=prompts)

    def make_record(
        self, g: Generation, rid: str, index: int, n_prompt_in: int, stats: DecodeStats, share: int
    ) -> dict:
        """The outputs.jsonl record of one generation.

        ``seconds`` and the ``stats`` forward counters are this prompt's share of its batch
        (batch value / prompts in the batch), so sums over records give the run's totals;
        ``peak_memory_bytes`` is the batch's peak. ``stats.llm_tokens`` / ``stats.rm_tokens``
        are this prompt's own computed token positions (padding excluded, see `Generation`),
        ``stats.llm_reread`` / ``stats.rm_reread`` those of them an earlier forward of this
        prompt had already computed, ``stats.llm_flops`` / ``stats.rm_flops`` their forward
        FLOPs, ``stats.rm_scored_steps`` the steps the RM scored (reward-guided methods).
        ``settings`` holds the method's own knobs (its `Method.settings`, temperature resolved).
        """
        s = self.settings
        return {
            "id": rid,
            "index": index,
            "prompt": g.prompt,
            "result": g.text,
            "response": g.prompt + g.text,
            "method": self.method,
            # the original code's name for the method, where it had one
            "mode": (self.found.original_names or (self.method,))[0],
            "settings": s.knobs(),
            "max_new_tokens": s.max_new_tokens,
            "seed": s.seed,
            "n_prompt_tokens": g.n_prompt_tokens,
            "n_new_tokens": g.n_new_tokens,
            "finished": g.finished,
            "reward": g.reward,
            "prompt_truncated": g.n_prompt_tokens < n_prompt_in,
            "seconds": stats.seconds / share,
            "stats": {
                "llm_tokens": g.llm_tokens,
                "rm_tokens": g.rm_tokens,
                "llm_reread": g.llm_reread,
                "rm_reread": g.rm_reread,
                "llm_flops": g.llm_flops,
                "rm_flops": g.rm_flops,
                "rm_scored_steps": g.scored_steps,
                "llm_forwards": stats.llm_forwards / share,
                "rm_forwards": stats.rm_forwards / share,
                "llm_tokens_in": stats.llm_tokens_in / share,
                "rm_tokens_in": stats.rm_tokens_in / share,
                "peak_memory_bytes": stats.peak_memory_bytes,
                "memory_kind": stats.memory_kind,
                "scorer": stats.scorer or None,
                "rm_truncated": stats.rm_truncated / share,
                "batch_prompts": share,
                "batch_seconds": stats.seconds,
                "rank": self.global_rank if self._trainer is not None else 0,
            },
            "policy": self.spec.policy,
            "reward_model": self.spec.reward_model if self.rm is not None else None,
            "label": self.spec.label,
        }


def skip_record(rid: str, index: int, n_prompt_tokens: int, reason: str) -> dict:
    """The record of a prompt left out (it goes to skipped.jsonl, not outputs.jsonl)."""
    return {"id": rid, "index": index, "skipped": reason, "n_prompt_tokens": n_prompt_tokens}


def _collate(items: list[dict]) -> dict[str, list]:
    """Lists, not tensors: the engine tokenizes with the policy's own defaults (BOS and all)."""
    return {k: [it[k] for it in items] for k in ("ids", "prompts", "index")}


class PromptsDataModule(L.LightningDataModule):
    """The prompts of this run still without an output, as batches of ``ids``/``prompts``/``index``.

    Why not `argsfw.data.PromptDataModule`: that one left-truncates prompts to
    ``data.max_prompt_length`` when tokenizing, which would bypass ``predict.too_long``, and
    its skip set is fixed at construction, before the ranks exist. Here global rank 0 reads
    what the run directory holds in ``setup`` (after the process group is up) and broadcasts
    it, so every rank (torchrun and SLURM start them all at once) shards the same list.
    """

    def __init__(
        self, records: list[PromptRecord], run_dir: Path, batch_size: int, num_workers: int = 0
    ):
        super().__init__()
        self.records = records
        self.run_dir = Path(run_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.order = {r.id: i for i, r in enumerate(records)}
        self.todo: list[dict] = []
        self.already_done = 0

    def setup(self, stage: str | None = None) -> None:
        """Work out the prompts still to decode (rank 0 decides, every rank gets its list)."""
        trainer = self.trainer
        zero = trainer is None or trainer.is_global_zero
        done = read_state(self.run_dir).done_ids if zero else None
        if trainer is not None and trainer.world_size > 1:
            done = trainer.strategy.broadcast(done, src=0)
        self.todo = [
            {"ids": r.id, "prompts": r.prompt, "index": i}
            for i, r in enumerate(self.records)
            if r.id not in done
        ]
        self.already_done = len(self.records) - len(self.todo)
        world = trainer.world_size if trainer is not None else 1
        if 0 < len(self.todo) < world:
            # why: Lightning's unrepeated predict sampler asserts that every rank gets at least
            # one sample; placeholder rows (id None) fill the gap and predict_step drops them.
            self.todo += [{"ids": None, "prompts": "", "index": -1}] * (world - len(self.todo))

    def predict_dataloader(self) -> DataLoader:
        """Batches in dataset order; Lightning adds the distributed sampler under DDP."""
        return DataLoader(
            ListDataset(self.todo),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=_collate,
            num_workers=self.num_workers,
        )
