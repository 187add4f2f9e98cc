"""Training only the top N transformer layers (plus the final norm and the head), and caching
the frozen bottom's outputs so each example pays for the frozen layers once, not once per epoch.

``model.train_top_layers=N`` freezes the embeddings and every layer below the top N of any
decoder or encoder whose layer stack `layer_stack` finds; the head (an RM's ``score``, an LM's
``lm_head``) and the final norm stay trainable. It is the cheap alternative to LoRA when the
frozen part dominates the cost: on a CPU, an RM on SmolLM2-135M trains its top 4 of 30 layers.

``rm.cache_frozen=true`` (reward stage) goes one step further. The frozen layers are a fixed
function, and with causal attention and right padding a real token's hidden state does not
depend on the padding, so the residual stream entering layer L-N is computed once per
sequence (on first sight, by the model's own forward with ``output_hidden_states``) and kept
in memory (4·H bytes per token in fp32). Every later step runs only the top N layers on it,
through the model's own backbone class with ``inputs_embeds``: a view that shares every module
and parameter of the backbone but whose layer stack is the top N layers only. That is exact
for rotary-position decoders (Llama, Mistral, Qwen, SmolLM ...), whose ``inputs_embeds`` enter
the first layer unchanged; models that add position embeddings to ``inputs_embeds`` (OPT,
GPT-2) are refused by a start-up check of the cached rewards against the model's own forward.
"""

from __future__ import annotations

import copy

import torch

from argsfw.models.features import layer_stack

SHAPE_STEP = 64  # the top's input lengths are rounded up to a multiple of this (see `hidden`)


def freeze_below_top(model: torch.nn.Module, n_top: int) -> tuple[int, int]:
    """Freeze every parameter except the top ``n_top`` layers' and those outside the stack
    that follow it (final norm, head); returns (trainable, total) parameter counts.

    Raises:
        ValueError: ``n_top`` exceeds the number of layers, or no stack is found.
    """
    _, _, layers = layer_stack(model)
    if not 1 <= n_top <= len(layers):
        raise ValueError(
            f"model.train_top_layers={n_top} but {type(model).__name__} has {len(layers)} layers; "
            f"choose 1..{len(layers)}"
        )
    keep = {id(p) for layer in layers[len(layers) - n_top :] for p in layer.parameters()}
    in_stack = {id(p) for p in layers.parameters()}
    embeds = {id(p) for p in model.get_input_embeddings().parameters()}
    # why tied weights matter: an LM head tied to the embeddings is the embedding matrix, so it
    # stays frozen with them (training it would move the frozen bottom's input too)
    for p in model.parameters():
        p.requires_grad_(id(p) in keep or (id(p) not in in_stack and id(p) not in embeds))
    counts = [(p.numel(), p.requires_grad) for p in model.parameters()]
    return sum(n for n, t in counts if t), sum(n for n, _ in counts)


class FrozenBottomCache:
    """The top layers of a decoder (an RM or a causal LM) whose bottom is frozen, run on the
    bottom's outputs read from a `argsfw.models.features.FeatureStore` (see the module docstring):
    on disk when a directory is given, so later fits of the same bottom skip it, else in memory
    for this run. Several caches may share one store (DPO's policy and its reference). The first
    call is checked against the model's own forward. Read-only on the model."""

    def __init__(
        self, model: torch.nn.Module, n_top: int, root=None, store=None, compute="float32"
    ):
        from argsfw.models.features import FeatureStore, bottom_fingerprint

        self.model = model
        self.backbone = getattr(model, model.base_model_prefix)
        owner, name, layers = layer_stack(self.backbone)
        if owner is not self.backbone:
            raise ValueError(
                f"model.cache_frozen: {type(self.backbone).__name__} keeps its layers in a "
                "sub-module; train without the cache (model.cache_frozen=false)"
            )
        self.split = len(layers) - n_top  # hidden_states[split] is the input of the first top layer
        # a view sharing every module and parameter, whose stack is the top layers only; kept out
        # of any nn.Module attribute so no parameter is registered (or checkpointed) twice
        self.top = copy.copy(self.backbone)
        self.top._modules = dict(self.backbone._modules)
        self.top._modules[name] = torch.nn.ModuleList(list(layers[self.split :]))
        if compute not in ("float32", "bfloat16"):  # here, not mid-fit
            raise ValueError(f"model.feature_dtype={compute!r}; choose float32 or bfloat16")
        self.compute = compute  # the bottom's dtype (model.feature_dtype); the top runs in its own
        self.fingerprint = bottom_fingerprint(self.backbone, layers, self.split, compute)
        if store is None:
            store = FeatureStore(None if root is None else root / self.fingerprint)
        self.store = store
        self._checked = False
        self._bottom = None  # what computes a missing row (bottom_for), built on first need

    def fill(self, items, pad: int, progress=None) -> int:
        """Compute and store the bottom's states of every pair of `items` not stored yet (each
        prompt once, its replies on its cache); returns the number of pairs computed."""
        from argsfw.models.features import fill_pairs

        return fill_pairs(
            {self.split: self.store}, self.backbone, items, pad, progress=progress,
            compute=self.compute,
        )  # fmt: skip

    @torch.no_grad()
    def _fill(self, ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> None:
        """Compute and store the bottom's output of ``rows`` of ``ids``/``mask`` [B, T]."""
        from argsfw.models.features import bottom_for

        if self._bottom is None:
            self._bottom = bottom_for(self.backbone, self.split, self.compute)
        hidden = self._bottom(input_ids=ids[rows], attention_mask=mask[rows]).last_hidden_state
        for j, r in enumerate(rows):
            n = int(mask[r].sum())
            self.store.add(ids[r, :n].tolist(), hidden[j, :n])

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden states [B, T, H] (after its final norm) of right-padded
        ``ids``/``mask`` [B, T]: the top layers on the stored bottom outputs (missing rows are
        computed and stored first).

        Raises:
            UsageError: on the first call, the cached path differs from the model's own forward
                (a model that adds position embeddings to its inputs, such as OPT or GPT-2).
        """
        lengths = mask.sum(-1).tolist()
        rows = [ids[r, :n].tolist() for r, n in enumerate(lengths)]
        found = [self.store.get(r) for r in rows]
        missing = [r for r, h in enumerate(found) if h is None]
        if missing:
            self._fill(ids, mask, missing)
            found = [self.store.get(r) if h is None else h for r, h in zip(rows, found)]
        dtype = self.backbone.get_input_embeddings().weight.dtype  # the top's own dtype
        # The top runs on a length rounded up to a multiple of SHAPE_STEP (more right padding,
        # which no real token attends to, so nothing changes): with a new length at every batch
        # (bf16 autocast on CPU), a 60-step SmolLM2 RM fit peaked at 8.6 GB; with few lengths,
        # at 7.0 GB. The cause inside the CPU kernels was not pinned down.
        width = -(-ids.shape[1] // SHAPE_STEP) * SHAPE_STEP
        embeds = found[0].new_zeros((ids.shape[0], width, found[0].shape[-1]), dtype=dtype)
        for r, h in enumerate(found):
            embeds[r, : lengths[r]] = h  # [B, width, H]
        wide_mask = torch.nn.functional.pad(mask, (0, width - ids.shape[1]))  # zeros: padding
        hidden = self.top(inputs_embeds=embeds, attention_mask=wide_mask).last_hidden_state
        hidden = hidden[:, : ids.shape[1]]  # [B, T, H]
        if not self._checked:  # once: the cached path must give what the model's forward gives
            self._checked = True
            self._check(ids, mask, hidden)
        return hidden

    @torch.no_grad()
    def _check(self, ids: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor) -> None:
        from argsfw.errors import UsageError

        want = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        real = mask.bool()
        err = float((hidden.detach()[real] - want[real]).abs().max())
        # a bf16 bottom is ~3 significant digits; what the check catches (position embeddings
        # added to the inputs) is off by the size of the states themselves
        tol = 1e-3 if self.compute == "float32" else 5e-2
        if err > tol * max(1.0, float(want[real].abs().max())):
            raise UsageError(
                f"model.cache_frozen: cached states differ from {type(self.backbone).__name__}'s "
                f"own forward by {err:.3g} (its position embeddings are added to the inputs); "
                "set model.cache_frozen=false"
            )

    def rewards(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rewards [B] of a ``num_labels=1`` sequence classifier on right-padded ``ids``/``mask``
        [B, T], read where the model's own forward reads them (its rightmost non-pad token)."""
        logits = self.model.score(self.hidden(ids, mask))[..., 0]  # [B, T]
        return logits[torch.arange(ids.shape[0]), hf_read_position(ids, self.model.config)]

    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A causal LM's logits [B, T, V] on right-padded ``ids``/``mask`` [B, T]."""
        return self.model.get_output_embeddings()(self.hidden(ids, mask))

    def response_logprob_sum(
        self, ids: torch.Tensor, mask: torch.Tensor, response: torch.Tensor, normalize=False
    ) -> torch.Tensor:
        """A causal LM's ``Σ log π(reply token)`` [B] over the tokens ``response`` marks, its
        head read at those positions only (`argsfw.rlhf.token_rewards.response_logprob_sum`)."""
        from argsfw.rlhf.token_rewards import response_logprob_sum

        head = self.model.get_output_embeddings()
        return response_logprob_sum(self.hidden(ids, mask), head, ids, response, normalize)

    def __len__(self) -> int:
        return len(self.store)


def frozen_cache(job, model: torch.nn.Module, store=None) -> FrozenBottomCache | None:
    """The stage's `FrozenBottomCache` when ``model.cache_frozen`` (None otherwise), its store in
    ``model.feature_dir`` (default `argsfw.models.features.features_root`), or `store` itself.

    Raises:
        UsageError: the model's layers cannot be cached this way.
    """
    from pathlib import Path

    from argsfw.errors import UsageError

    if not job.model.cache_frozen:
        return None
    root = None
    if job.model.feature_dir != "memory":
        from argsfw.models.features import features_root

        root = Path(job.model.feature_dir) if job.model.feature_dir else features_root()
    try:
        return FrozenBottomCache(
            model, job.model.train_top_layers, root, store, job.model.feature_dtype
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def feature_pass(module, caches: list[FrozenBottomCache], pad: int) -> None:
    """The feature pass of a fit (a LightningModule's ``on_fit_start``): every pair of the fit's
    splits not yet stored runs through the frozen bottom once (each prompt once, its replies on
    its cache), with a progress bar; under DDP each rank takes every W-th pair and reads the
    others' shards after a barrier. Caches sharing a store are filled once."""
    import logging
    import time

    from tqdm.auto import tqdm

    trainer = module.trainer
    stores = {}
    for c in caches:
        stores.setdefault(id(c.store), c)
    items = [it for ds in trainer.datamodule.datasets.values() for it in ds.items]
    world, rank = trainer.world_size, trainer.global_rank
    for cache in stores.values():
        on_disk = cache.store.root is not None
        mine = items[rank::world] if on_disk else items
        start = time.perf_counter()
        bar = tqdm(total=len(mine), desc="frozen features", unit="pair", disable=rank != 0)

        def progress(done: int, total: int, bar=bar) -> None:
            bar.total = total
            bar.update(done - bar.n)

        computed = cache.fill(mine, pad, progress)
        bar.close()
        if on_disk and world > 1:
            trainer.strategy.barrier()
            cache.store.reload()
        logging.getLogger(__name__).info(
            "frozen features: %d pairs computed in %.0f s, %d sequences stored in %s",
            computed,
            time.perf_counter() - start,
            len(cache.store),
            cache.store.root or "memory",
        )


def hf_read_position(ids: torch.Tensor, config) -> torch.Tensor:
    """[B] index of the token a Hugging Face decoder sequence classifier reads: the rightmost
    one that is not ``config.pad_token_id`` (the last one when there is no pad id)."""
    pad = config.pad_token_id
    if pad is None:
        return torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
    idx = torch.arange(ids.shape[1], device=ids.device)
    return (idx * (ids != pad)).argmax(-1)
