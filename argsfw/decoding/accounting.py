"""Cost accounting for a decoding call: forward passes, tokens, re-reads, FLOPs, time and memory.

Every engine call fills one `DecodeStats`; the predict loop stores it per batch and the
evaluation puts cost beside quality. Counters are incremented by the model wrappers
(`PolicyState`, the reward scorers), so they count what really ran.

Each prompt's own cost comes from a `PrefixLedger` per model and batch: every forward walks
the token prefixes of the positions it computes through the ledger (`RowCursors` follows each
row of a batch through it), which counts the positions, the keys each attended, and the
positions an earlier forward of the same prompt's search had already computed (re-reads).
`FlopSpec` turns a model's positions and attended keys into forward FLOPs.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class DecodeStats:
    """Counters of one decoding call (or the sum of several, see `merge`).

    ``llm_forwards``/``rm_forwards`` count model forward calls (one call may hold many rows
    and tokens); ``llm_tokens_in``/``rm_tokens_in`` count the token positions those calls
    processed, padding included (each prompt's own counts, padding excluded, are in its
    `Generation`: ``llm_tokens``, ``rm_tokens``, ``scored_steps``). ``peak_memory_bytes`` is CUDA ``max_memory_allocated``
    summed over the devices used, or on CPU the process's peak resident set size sampled
    every step (``memory_kind`` says which). ``rm_cache_bytes_peak`` is the largest reward
    model KV cache held during the call. ``scorer`` names the reward scorer that ran
    (``tree``, ``expanded``, ``full``; empty when none); ``rm_truncated`` counts candidate
    texts cut from the left to fit the reward model's context (full-sequence scoring only).
    """

    method: str = ""
    prompts: int = 0
    new_tokens: int = 0
    llm_forwards: int = 0
    rm_forwards: int = 0
    llm_tokens_in: int = 0
    rm_tokens_in: int = 0
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = "cpu_rss"
    rm_cache_bytes_peak: int = 0
    scorer: str = ""
    rm_truncated: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def prompts_per_second(self) -> float:
        return self.prompts / self.seconds if self.seconds > 0 else 0.0

    @property
    def rm_forwards_per_token(self) -> float:
        return self.rm_forwards / self.new_tokens if self.new_tokens else 0.0

    def merge(self, other: DecodeStats) -> DecodeStats:
        """Sum of two calls' counters (times add, peaks take the max); returns a new object."""
        out = DecodeStats(**{**asdict(self), "extra": dict(self.extra)})
        for name in (
            "prompts",
            "new_tokens",
            "llm_forwards",
            "rm_forwards",
            "llm_tokens_in",
            "rm_tokens_in",
            "rm_truncated",
        ):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.seconds = self.seconds + other.seconds
        out.peak_memory_bytes = max(self.peak_memory_bytes, other.peak_memory_bytes)
        out.rm_cache_bytes_peak = max(self.rm_cache_bytes_peak, other.rm_cache_bytes_peak)
        out.method = self.method or other.method
        out.scorer = self.scorer or other.scorer
        return out

    def as_dict(self) -> dict:
        """Flat JSON-ready dict with the derived rates."""
        d = asdict(self)
        d.update(
            tokens_per_second=self.tokens_per_second,
            prompts_per_second=self.prompts_per_second,
            rm_forwards_per_token=self.rm_forwards_per_token,
        )
        return d


def _rss_bytes() -> int:
    # why: /proc/self/statm is a cheap read (no psutil import on the hot path); other OSes
    # fall back to the lifetime peak from getrusage.
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Meter:
    """Clock and peak-memory sampler for one call (`sample()` once per step), and the batch's
    `PrefixLedger` of each model role (``"llm"``: the policy; ``"rm"``: the guide)."""

    def __init__(self, stats: DecodeStats, devices: list[torch.device]):
        self.stats = stats
        self.open_batch()
        self.cuda = sorted({d for d in devices if d.type == "cuda"}, key=str)
        self.stats.memory_kind = "cuda_max_allocated" if self.cuda else "cpu_rss"
        for d in self.cuda:
            torch.cuda.reset_peak_memory_stats(d)
        self.t0 = time.perf_counter()
        self.sample()

    def open_batch(self, windows: dict[str, int | None] | None = None) -> None:
        """Fresh ledgers for a new batch (``windows``: each role's sliding window, if any)."""
        windows = windows or {}
        self.ledgers = {role: PrefixLedger(windows.get(role)) for role in ("llm", "rm")}

    def cursors(self, role: str, slots) -> RowCursors:
        """`RowCursors` of model ``role`` for rows of prompts ``slots`` (the call's prompt indices)."""
        return RowCursors(self.ledgers[role], slots)

    def tally(self, role: str, slot) -> Tally:
        """Prompt ``slot``'s counters for model ``role`` in the current batch (zeros if it ran nothing)."""
        return self.ledgers[role].tallies.get(slot, Tally())

    def sample(self) -> None:
        if not self.cuda:
            self.stats.peak_memory_bytes = max(self.stats.peak_memory_bytes, _rss_bytes())

    def stop(self) -> DecodeStats:
        """Stop the clock and read the CUDA peaks; returns the filled stats."""
        if self.cuda:
            for d in self.cuda:
                torch.cuda.synchronize(d)
            self.stats.peak_memory_bytes = sum(
                torch.cuda.max_memory_allocated(d) for d in self.cuda
            )
        else:
            self.sample()
        self.stats.seconds = time.perf_counter() - self.t0
        return self.stats


def cache_bytes(cache) -> int:
    """Bytes held by a transformers `Cache`'s key/value tensors (0 for an empty cache)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


@dataclass
class Tally:
    """One prompt's counters for one model: ``positions`` computed (padding excluded), of which
    ``rereads`` had been computed by an earlier forward of the same prompt's search, and
    ``context``, the keys those positions attended summed over them (each attends itself and
    every earlier token of its sequence: its depth in the trie)."""

    positions: int = 0
    rereads: int = 0
    context: int = 0


class PrefixLedger:
    """The token positions one model computed for the prompts of one batch: a trie of token
    prefixes per prompt.

    A node is a token prefix of one prompt's search (a root per prompt: the empty prefix). A
    forward that computes a position walks from the node of the tokens before it to the child
    for its token; the position is a *re-read* when that child was made by an EARLIER forward
    (same model, same prompt, same tokens before it), whose keys and values could have been
    kept. Rows that compute the same prefix within ONE forward (identical samples in
    lock-step) are not re-reads: neither could have reused the other's work.

    Why hand-written: no library counts recomputed prefixes of a search. Cost: one dict
    look-up per computed position, one node per distinct prefix, freed with the batch.
    ``window`` (a sliding-window model's span) caps the keys a position attends.
    """

    def __init__(self, window: int | None = None):
        self.window = window
        self.forward = 0
        self._child: dict[tuple[int, int], int] = {}
        self._depth: list[int] = []
        self._born: list[int] = []
        self._parent: list[int] = []
        self._roots: dict[object, int] = {}
        self.tallies: dict[object, Tally] = {}

    def begin(self) -> None:
        """Start a new forward (positions walked from now on are this forward's)."""
        self.forward += 1

    def _node(self, parent: int, depth: int) -> int:
        self._depth.append(depth)
        self._born.append(self.forward)
        self._parent.append(parent)
        return len(self._depth) - 1

    def root(self, slot) -> int:
        """The root node (empty prefix) of prompt ``slot``, made on first use with its `Tally`."""
        node = self._roots.get(slot)
        if node is None:
            node = self._roots[slot] = self._node(-1, 0)
            self.tallies[slot] = Tally()
        return node

    def walk(self, node: int, tokens, tally: Tally) -> int:
        """Compute ``tokens`` after prefix ``node``: counts them into ``tally``; returns the last node."""
        child, depth, born, f, w = self._child, self._depth, self._born, self.forward, self.window
        context = rereads = 0
        for t in tokens:
            key = (node, t)
            nxt = child.get(key)
            if nxt is None:
                nxt = child[key] = self._node(node, depth[node] + 1)
            elif born[nxt] < f:
                rereads += 1
            node = nxt
            context += depth[nxt] if w is None else min(depth[nxt], w)
        tally.positions += len(tokens)
        tally.rereads += rereads
        tally.context += context
        return node

    def fan(self, node: int, tokens, tally: Tally) -> list[int]:
        """Compute each of ``tokens`` right after prefix ``node`` (one candidate each, side by
        side); returns their nodes. `walk` of one token per candidate, in one loop."""
        child, born, f = self._child, self._born, self.forward
        d = self._depth[node] + 1
        out, rereads = [], 0
        for t in tokens:
            key = (node, t)
            nxt = child.get(key)
            if nxt is None:
                nxt = child[key] = self._node(node, d)
            elif born[nxt] < f:
                rereads += 1
            out.append(nxt)
        tally.positions += len(out)
        tally.rereads += rereads
        tally.context += len(out) * (d if self.window is None else min(d, self.window))
        return out

    def ancestor(self, node: int, depth: int) -> int:
        """The node of ``node``'s prefix cut to ``depth`` tokens."""
        while self._depth[node] > depth:
            node = self._parent[node]
        return node

    def depth(self, node: int) -> int:
        """Tokens in the prefix of ``node``."""
        return self._depth[node]


class RowCursors:
    """Where each row of a batch stands in its prompt's trie of one `PrefixLedger`.

    A model wrapper keeps one, and moves it as it moves its KV cache: `read` the tokens a row
    commits, `branch` a row's candidates without moving it, `move` it to an adopted candidate,
    `keep`/`repeat` rows with the batch. Call `begin` once per forward. ``slots`` are the
    rows' prompts (samples of one prompt share its slot, so they share its trie and tally).
    """

    def __init__(self, ledger: PrefixLedger, slots):
        self.ledger = ledger
        self.slots = list(slots)
        self.roots = [ledger.root(s) for s in self.slots]
        self.nodes = list(self.roots)

    def begin(self) -> None:
        """Start a forward of this model."""
        self.ledger.begin()

    def read(self, row: int, tokens) -> int:
        """Row ``row`` computes ``tokens`` after its prefix and moves past them; returns its node."""
        node = self.ledger.walk(self.nodes[row], tokens, self.ledger.tallies[self.slots[row]])
        self.nodes[row] = node
        return node

    def branch(self, row: int, tokens) -> int:
        """Row ``row`` computes ``tokens`` after its prefix without moving (a candidate); returns their node."""
        return self.ledger.walk(self.nodes[row], tokens, self.ledger.tallies[self.slots[row]])

    def fan(self, row: int, tokens) -> list[int]:
        """Row ``row`` computes each of ``tokens`` as a one-token candidate after its prefix; returns their nodes."""
        return self.ledger.fan(self.nodes[row], tokens, self.ledger.tallies[self.slots[row]])

    def step(self, tokens: list[int]) -> None:
        """Every row computes and moves past its one token ``tokens[row]``."""
        ledger, nodes, slots, tallies = self.ledger, self.nodes, self.slots, self.ledger.tallies
        for row, t in enumerate(tokens):
            nodes[row] = ledger.fan(nodes[row], (t,), tallies[slots[row]])[0]

    def read_whole(self, row: int, tokens) -> int:
        """Row ``row``'s prompt computes the whole sequence ``tokens`` from its start (no cache); returns its node."""
        return self.ledger.walk(self.roots[row], tokens, self.ledger.tallies[self.slots[row]])

    def count(self, row: int, positions: int, context: int) -> None:
        """Count positions that no prefix keys (an encoder attends the whole sequence, after it too)."""
        tally = self.ledger.tallies[self.slots[row]]
        tally.positions += positions
        tally.context += context

    def move(self, row: int, node: int) -> None:
        """Row ``row`` now stands at ``node`` (its cache adopted what ``node``'s last position computed)."""
        self.nodes[row] = node

    def rewind(self, row: int, depth: int) -> None:
        """Row ``row`` drops its cached tokens past ``depth`` (a re-tokenized tail)."""
        self.nodes[row] = self.ledger.ancestor(self.nodes[row], depth)

    def keep(self, rows) -> None:
        """Keep only ``rows`` (indices into the current batch, a list or a 1-D tensor), in order."""
        idx = rows.tolist() if isinstance(rows, torch.Tensor) else list(rows)
        self.slots = [self.slots[i] for i in idx]
        self.roots = [self.roots[i] for i in idx]
        self.nodes = [self.nodes[i] for i in idx]

    def repeat(self, n: int) -> None:
        """Each row becomes ``n`` rows (row i -> rows i*n ... i*n+n-1), as ``batch_repeat_interleave``."""
        self.slots = [s for s in self.slots for _ in range(n)]
        self.roots = [r for r in self.roots for _ in range(n)]
        self.nodes = [v for v in self.nodes for _ in range(n)]

    def fork(self) -> RowCursors:
        """Cursors for another reader of the same rows (same prompts and tallies), at the rows' roots."""
        out = RowCursors.__new__(RowCursors)
        out.ledger, out.slots, out.roots = self.ledger, list(self.slots), list(self.roots)
        out.nodes = list(self.roots)
        return out


def untracked(rows: int) -> RowCursors:
    """Cursors into a private ledger: for a model wrapper used outside a decoding call (training, tests)."""
    return RowCursors(PrefixLedger(), range(rows))


@dataclass(frozen=True)
class FlopSpec:
    """What one model's forward FLOPs depend on.

    ``params``: its non-embedding parameters (token and position embedding tables and a
    vocabulary output head left out, as Kaplan et al. 2020 count N); ``layers``; ``attn_width``:
    query heads x head dimension; ``window``: the keys a position may attend at most (a
    sliding-window model), else None.
    """

    params: int
    layers: int
    attn_width: int
    window: int | None = None

    def flops(self, positions: int, context: int) -> float:
        """Forward FLOPs of ``positions`` computed positions that attended ``context`` keys in all.

        ``2 * params * positions + 4 * layers * attn_width * context``: every weight is one
        multiply-add per position; per layer, a position with ``c`` keys multiplies its query by
        ``c`` keys (``2 * c * attn_width``) and sums ``c`` values (the same again). Softmax,
        norms, the pooled reward head and the policy's vocabulary head are left out.
        """
        return 2.0 * self.params * positions + 4.0 * self.layers * self.attn_width * context


def _config_int(cfg, *names: str) -> int | None:
    for name in names:
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def flop_spec(model) -> FlopSpec:
    """The `FlopSpec` of a Hugging Face model (its parameters and its config's shape).

    Embedding tables (``nn.Embedding``: tokens, positions, token types) and the output
    embeddings (a causal LM's vocabulary head, tied or not) are left out of ``params``. An
    unknown layer count or attention width gives 0 (no attention term). A guide made of models
    of one shape that reports each model's positions (DPO's implicit reward) names the one a
    position costs as its ``flop_model``.
    """
    model = getattr(model, "flop_model", model)
    cfg = model.config
    out = getattr(model, "get_output_embeddings", lambda: None)()
    skip = {
        id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    if isinstance(out, torch.nn.Module):
        skip |= {id(p) for p in out.parameters()}
    params = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    layers = _config_int(cfg, "num_hidden_layers", "n_layer", "num_layers") or 0
    heads = _config_int(cfg, "num_attention_heads", "n_head") or 0
    hidden = _config_int(cfg, "hidden_size", "n_embd", "d_model") or 0
    head_dim = _config_int(cfg, "head_dim") or (hidden // heads if heads else 0)
    window = _config_int(cfg, "sliding_window")
    if getattr(cfg, "use_sliding_window", True) is False:
        window = None
    return FlopSpec(params=params, layers=layers, attn_width=heads * head_dim, window=window)
