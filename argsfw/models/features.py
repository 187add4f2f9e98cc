"""Frozen-backbone features on disk: what every fit that trains only the top layers of one
backbone shares, computed once.

A fit with ``model.train_top_layers=N`` never changes the bottom ``L - N`` layers, so the residual
stream entering the first trained layer is a fixed function of the token ids. `FeatureStore` keeps
it on disk, one directory per (bottom weights, split layer), one entry per token sequence; a
second fit, another recipe trial on the same backbone and data, or another stage that trains the
top of the same backbone (an RM, its judge twin, ...) reads it instead of running the bottom again.

* **Keys.** An entry is keyed by a hash of its token ids, and the directory by a fingerprint of
  the bottom's weights and config (`bottom_fingerprint`) and the split layer. Tokenization and
  data are in the ids themselves: a different template, truncation or text is another key.
* **Shared prompts.** A preference pair's replies share the prompt; with causal attention the
  prompt's states do not depend on what follows, so `fill_pairs` runs each prompt once and both
  replies on its KV cache. An entry may therefore hold only the positions after a parent entry
  (its prompt); `FeatureStore.get` joins them.
* **Resume.** Entries are written in shards, each an atomic rename of a complete safetensors file
  (the tensor and its entry table). A killed pass loses at most the shard it was filling; the
  next pass skips every sequence already stored.

Why hand-written: ``datasets``' map cache keys whole datasets by fingerprint and would recompute
everything for one changed example or a new split layer; here the unit of reuse is one sequence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_FORMAT = 1  # bump when the layout changes: older directories are then ignored, never misread
SHARD_TOKENS = 16384  # positions per shard file (38 MB at hidden 576 in fp32)


_STACKS = ("layers", "h", "layer", "blocks")  # Llama/Mistral/Qwen, GPT-2/Bloom, BERT, MPT


def layer_stack(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """``(owner, attribute, layers)`` of the model's main stack of transformer layers.

    Raises:
        ValueError: no single ModuleList of layers is found.
    """
    found = []
    for mod in model.modules():
        for name in _STACKS:
            child = getattr(mod, name, None)
            if isinstance(child, torch.nn.ModuleList) and len(child) > 0:
                found.append((mod, name, child))
    if len(found) != 1:
        raise ValueError(
            f"model.train_top_layers: cannot find the layer stack of {type(model).__name__} "
            f"({len(found)} candidates); use model.lora instead"
        )
    return found[0]


def ids_key(ids: Sequence[int]) -> str:
    """A hex key of a token-id sequence (blake2b of its int64 bytes)."""
    data = torch.as_tensor(list(ids), dtype=torch.int64).numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# config keys that name a head, a task or generation defaults, not what the bottom computes: a
# reward model and a causal LM built from one checkpoint share their bottom's features
_NOT_BOTTOM = {
    "architectures", "_name_or_path", "_model_name_or_path", "transformers_version", "id2label",
    "label2id", "num_labels", "problem_type", "pad_token_id", "bos_token_id", "eos_token_id",
    "unk_token_id", "sep_token_id", "tie_word_embeddings", "use_cache", "output_attentions",
    "output_hidden_states", "return_dict", "dtype", "torch_dtype", "num_hidden_layers",
}  # fmt: skip


def bottom_fingerprint(
    backbone: torch.nn.Module, layers: torch.nn.ModuleList, split: int, compute: str = "float32"
) -> str:
    """A hash of everything the first `split` layers' output depends on: the config (less the
    keys of `_NOT_BOTTOM` and argsfw's own), the input embeddings and those layers' weights
    (exact bytes, dtype included), and the dtype the pass computes in (`compute`)."""
    h = hashlib.blake2b(digest_size=12)
    cfg = {
        k: v
        for k, v in backbone.config.to_dict().items()
        if k not in _NOT_BOTTOM and not k.startswith("argsfw_")
    }
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    params = list(backbone.get_input_embeddings().parameters())
    params += [p for layer in layers[:split] for p in layer.parameters()]
    for p in params:
        t = p.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"{h.hexdigest()}-L{split}-{compute}-v{_FORMAT}"


def features_root() -> Path:
    """Where feature stores live: ``$ARGSFW_FEATURES``, else ``<argsfw cache>/features``."""
    if os.environ.get("ARGSFW_FEATURES"):
        return Path(os.environ["ARGSFW_FEATURES"]).expanduser()
    from argsfw.models.packaged import cache_dir

    return cache_dir() / "features"


class FeatureStore:
    """Per-sequence hidden states [T, H] of one backbone at one layer, in a directory of shards.

    An entry is ``(parent key or "", start, tensor [T - start, H])``: positions ``start..T`` of
    its sequence; positions ``0..start`` are its parent's (the sequence's first `start` ids).
    """

    def __init__(self, root: Path | str | None):
        self.root = None if root is None else Path(root)  # None: in memory, this process only
        self.entries: dict[str, tuple[str, int, torch.Tensor]] = {}
        self._pending: list[tuple[str, str, int, torch.Tensor]] = []
        self._pending_tokens = 0
        self.positions_read = 0  # positions loaded from disk at open
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            for shard in sorted(self.root.glob("shard-*.safetensors")):
                self._load(shard)

    def _load(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            table = json.loads(f.metadata()["entries"])
            data = f.get_tensor("h")
        for key, parent, start, offset, length in table:
            self.entries[key] = (parent, start, data[offset : offset + length])
        self.positions_read += data.shape[0]

    def reload(self) -> None:
        """Read shards written since opening (another rank's, another process's)."""
        if self.root is None:
            return
        self.flush()
        self.entries.clear()
        self.positions_read = 0
        for shard in sorted(self.root.glob("shard-*.safetensors")):
            self._load(shard)

    def __contains__(self, ids: Sequence[int]) -> bool:
        return ids_key(ids) in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, ids: Sequence[int]) -> torch.Tensor | None:
        """Hidden states [len(ids), H] of `ids`, or None when not stored."""
        entry = self.entries.get(ids_key(ids))
        if entry is None:
            return None
        parent, start, tail = entry
        if not parent:
            return tail
        head = self.get(ids[:start])
        return None if head is None else torch.cat([head, tail])

    def add(self, ids: Sequence[int], hidden: torch.Tensor, start: int = 0) -> None:
        """Store positions ``start..len(ids)`` of `ids` ([len(ids) - start, H]); with ``start > 0``
        the sequence's first `start` ids must be stored (or added) too."""
        key = ids_key(ids)
        if key in self.entries:
            return
        parent = ids_key(ids[:start]) if start else ""
        tail = hidden.detach().to("cpu").contiguous()
        self.entries[key] = (parent, start, tail)
        if self.root is None:
            return
        self._pending.append((key, parent, start, tail))
        self._pending_tokens += tail.shape[0]
        if self._pending_tokens >= SHARD_TOKENS:
            self.flush()

    def flush(self) -> None:
        """Write the pending entries as one shard: a complete file renamed into place."""
        if not self._pending:
            return
        from safetensors.torch import save_file

        table, offset = [], 0
        for key, parent, start, tail in self._pending:
            table.append([key, parent, start, offset, tail.shape[0]])
            offset += tail.shape[0]
        data = torch.cat([t for *_, t in self._pending])
        name = f"shard-{time.time_ns():020d}-{os.getpid()}.safetensors"
        tmp = self.root / f".{name}.tmp"
        save_file({"h": data}, str(tmp), metadata={"entries": json.dumps(table)})
        os.replace(tmp, self.root / name)
        self._pending, self._pending_tokens = [], 0


def bottom_view(backbone: torch.nn.Module, split: int) -> torch.nn.Module:
    """A view of `backbone` (sharing every module and parameter) that runs only its first `split`
    layers and no final norm: its ``last_hidden_state`` is ``hidden_states[split]`` of the full
    model's forward. Kept out of any module attribute so no parameter is registered twice."""
    import copy

    owner, name, layers = layer_stack(backbone)
    if owner is not backbone or not hasattr(backbone, "norm"):
        raise ValueError(
            f"{type(backbone).__name__} keeps its layers or its final norm elsewhere; "
            "its features cannot be cached"
        )
    view = copy.copy(backbone)
    view._modules = dict(backbone._modules)
    view._modules[name] = torch.nn.ModuleList(list(layers[:split]))
    view._modules["norm"] = torch.nn.Identity()
    view.config = copy.copy(backbone.config)
    view.config.num_hidden_layers = split
    for attr in ("layer_types",):  # per-layer lists sized to the stack
        if isinstance(getattr(view.config, attr, None), list):
            setattr(view.config, attr, getattr(view.config, attr)[:split])
    return view


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


def _right_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


class _LayerOutputs:
    """Forward hooks keeping the outputs of some layers of a stack during one forward.

    Why not ``output_hidden_states``: transformers records it through hooks it installs once per
    layer module, and a view sharing those modules (`bottom_view`) would install a second set,
    so the full model would afterwards report every state twice.
    """

    def __init__(self, bottom: torch.nn.Module, layers: Sequence[int]):
        stack = layer_stack(bottom)[2]
        if min(layers) < 1:
            raise ValueError(f"layers must be >= 1 (the output of layer l - 1), got {list(layers)}")
        self.layers, self.kept = list(layers), {}
        self.handles = [
            stack[layer - 1].register_forward_hook(self._keeper(layer)) for layer in self.layers
        ]

    def _keeper(self, layer: int):
        def hook(module, args, out):
            self.kept[layer] = out[0] if isinstance(out, tuple) else out

        return hook

    def take(self) -> torch.Tensor:
        """[len(layers), B, T, H] of the last forward."""
        return torch.stack([self.kept[layer] for layer in self.layers])

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def prompt_and_replies(
    bottom: torch.nn.Module,
    prompts: list[list[int]],
    replies: list[list[list[int]]],
    pad: int,
    layers: Sequence[int],
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Run each prompt once and its replies on the prompt's KV cache, through `bottom` (a
    `bottom_view` reaching at least ``max(layers)``).

    Yields ``(i, j, hidden)``: ``j = -1`` for prompt i's states [len(layers), P_i, H], else reply
    j's states [len(layers), R_ij, H] (positions P_i.. of prompt + reply); ``hidden[l]`` is
    ``hidden_states[layers[l]]`` of the model's forward. Prompts are left-padded with explicit
    positions, replies right-padded after them, so every real token sees exactly its own sequence
    at its own positions, as in an unpadded forward (equal up to float rounding).
    """
    hooks = _LayerOutputs(bottom, layers)
    try:
        yield from _prompt_and_replies(bottom, prompts, replies, pad, hooks)
    finally:
        hooks.close()


def _prompt_and_replies(bottom, prompts, replies, pad, hooks: _LayerOutputs):
    from transformers import DynamicCache

    ids, mask = _left_pad(prompts, pad)  # [B, P]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    bottom(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
    states = hooks.take()  # [L, B, P, H]
    width = ids.shape[1]
    for i, p in enumerate(prompts):
        yield i, -1, states[:, i, width - len(p) :]
    rows = [i for i, rs in enumerate(replies) for _ in rs]
    flat = [r for rs in replies for r in rs]
    keep = [k for k, r in enumerate(flat) if r]
    if not keep:
        return
    rows, flat = [rows[k] for k in keep], [flat[k] for k in keep]
    cache.batch_select_indices(torch.tensor(rows))
    r_ids, r_mask = _right_pad(flat, pad)  # [N, R]
    full_mask = torch.cat([mask[rows], r_mask], dim=1)
    start = torch.tensor([len(prompts[i]) for i in rows])
    r_pos = start[:, None] + torch.arange(r_ids.shape[1])[None]
    bottom(
        input_ids=r_ids, attention_mask=full_mask, position_ids=r_pos, cache=cache, use_cache=True
    )
    hidden = hooks.take()  # [L, N, R, H]
    counters: dict[int, int] = {}
    for n, i in enumerate(rows):
        j = counters.get(i, 0)
        while not replies[i][j]:  # empty replies were skipped
            j += 1
        counters[i] = j + 1
        yield i, j, hidden[:, n, : len(flat[n])]


def bottom_for(backbone: torch.nn.Module, split: int, compute: str = "float32") -> torch.nn.Module:
    """The module the feature pass runs: `bottom_view` for ``float32``; for ``bfloat16``, a copy
    of that view in bfloat16 (the copy's weights are rounded once; its matrix products run in
    bf16: 3.6x faster than fp32 on this project's AMX CPU, where autocast, casting every weight
    at every op, gave 2.6x; states are stored in bf16, half the disk and memory).

    Raises:
        ValueError: an unknown `compute`.
    """
    import copy

    view = bottom_view(backbone, split)
    if compute == "float32":
        return view
    if compute == "bfloat16":
        return copy.deepcopy(view).to(torch.bfloat16)
    raise ValueError(f"model.feature_dtype={compute!r}; choose float32 or bfloat16")


def fill_pairs(
    stores: dict[int, FeatureStore],
    backbone: torch.nn.Module,
    items: Sequence[dict],
    pad: int,
    batch_tokens: int = 4096,
    progress: Callable[[int, int], None] | None = None,
    compute: str = "float32",
) -> int:
    """Store ``hidden_states[layer]`` of `backbone` in ``stores[layer]`` for every sequence of
    `items` (`argsfw.data.tokenize_rm` examples: ``prompt_len``, ``chosen``, ``rejected``) that
    one of them lacks, in one pass through the layers up to the highest; returns how many pairs
    were computed. Batches hold about `batch_tokens` positions; ``progress(done, total)`` is
    called after each. `compute` is the pass's dtype (`bottom_for`).

    Raises:
        ValueError: an item with ``suffix_len`` (an encoder RM's closing [SEP]).
    """
    layers = sorted(stores)
    bottom = bottom_for(backbone, layers[-1], compute)
    todo = [
        it
        for it in items
        if any(it["chosen"] not in s or it["rejected"] not in s for s in stores.values())
    ]
    if any(it.get("suffix_len", 0) for it in todo):
        raise ValueError("feature caching needs decoder inputs without closing special tokens")

    # similar lengths together, so that little of a batch is padding: prompts in buckets of
    # similar length (they are left-padded to the longest), replies by length within a bucket
    # (right-padded to the longest); a batch is cut where its padded size would pass batch_tokens
    def reply(it: dict) -> int:
        return max(len(it["chosen"]), len(it["rejected"])) - it["prompt_len"]

    todo.sort(key=lambda it: (it["prompt_len"] // 32, reply(it), it["prompt_len"]))
    done, batch, widest = 0, [], (0, 0)
    for it in [*todo, None]:
        if it is not None:
            grown = (max(widest[0], it["prompt_len"]), max(widest[1], reply(it)))
            padded = (len(batch) + 1) * (grown[0] + 2 * grown[1])
        if batch and (it is None or padded > batch_tokens):
            prompts = [b["chosen"][: b["prompt_len"]] for b in batch]
            replies = [
                [b["chosen"][b["prompt_len"] :], b["rejected"][b["prompt_len"] :]] for b in batch
            ]
            for i, j, hidden in prompt_and_replies(bottom, prompts, replies, pad, layers):
                for state, layer in zip(hidden, layers):
                    if j < 0:
                        stores[layer].add(prompts[i], state)
                    else:
                        seq = prompts[i] + replies[i][j]
                        stores[layer].add(seq, state, start=len(prompts[i]))
            done += len(batch)
            if progress:
                progress(done, len(todo))
            batch = []
        if it is not None:
            batch.append(it)
            widest = (it["prompt_len"], reply(it)) if len(batch) == 1 else (grown[0], grown[1])
    for store in stores.values():
        store.flush()
    return done
