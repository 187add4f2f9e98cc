"""DPO's implicit reward as a token-level guide: ``r(x, y_<t, v) = beta * (log pi_dpo(v | x, y_<t)
- log pi_ref(v | x, y_<t))``.

A DPO policy is a reward model in disguise (Rafailov et al., 2023): summed over an answer, its
log-ratio to the reference it was trained against, times the DPO ``beta``, is the reward the
DPO loss fitted. Per token it is a dense reward over the whole vocabulary, read with one cached
forward of each model per generated token, in lock-step with the policy, like the other
token-level guides (`argsfw.decoding.token_level`). TreeBoN ranks partial answers with it;
``token-rm`` and ``genarm`` can read it as their guide too.

``reward_model=<a DPO run>`` names the guide: its export holds pi_dpo, and its ``meta.json``
the DPO ``beta`` (``dpo_beta``) and the model the run started from (``base_model``), which is
the reference: the DPO stage's pi_ref is a frozen copy of its initial policy (with LoRA, the
base without adapters, i.e. the same weights). `reward_kind` reads such a directory as kind
``"implicit"``.

Both models count as the guide's compute: every position is two RM positions in the batch's
ledger, and the FLOPs of one model each (``flop_model``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from argsfw.decoding.accounting import DecodeStats, RowCursors, cache_bytes, untracked
from argsfw.decoding.policy import PolicyState
from argsfw.decoding.types import RewardKind

KIND = RewardKind.IMPLICIT.value


def _meta(path: str | Path) -> dict:
    for f in (Path(path) / "meta.json", Path(path).parent / "meta.json"):
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return {}


def dpo_guide_parts(path: str | Path) -> tuple[str, float]:
    """``(reference model input, beta)`` of the DPO export at ``path`` (a resolved HF dir), read from its meta.

    Raises:
        ModelPathError: the meta is not a DPO run's, names no base model, or the run started
            from a freshly built tiny model (there is no reference to load).
    """
    from argsfw.models.paths import ModelPathError
    from argsfw.models.reward_kind import is_dpo_export

    meta = _meta(path)
    if not is_dpo_export(meta):
        raise ModelPathError(
            f"reward model {str(path)!r} is not a DPO run (its meta.json has no dpo_beta): the implicit "
            "reward needs a DPO export and its reference; make one with python -m argsfw.fit recipe=tiny_dpo"
        )
    base, beta = meta.get("base_model"), meta.get("dpo_beta", 0.1)
    if not isinstance(base, str) or not base or base.startswith("tiny:"):
        raise ModelPathError(
            f"DPO run {str(path)!r} started from {base!r}, not from a saved model, so its reference "
            "pi_ref cannot be loaded; train DPO from a policy run (policy=<SFT run dir>)"
        )
    return base, float(beta)


def reference_path(path: str | Path) -> str:
    """The resolved reference model of the DPO export at ``path`` (checked before any weight loads).

    Raises `ModelPathError` naming the DPO run and the missing reference.
    """
    from argsfw.models.paths import ModelPathError, resolve_model_path

    base, _ = dpo_guide_parts(path)
    try:
        return resolve_model_path(base, "DPO reference")
    except ModelPathError as exc:
        raise ModelPathError(
            f"{exc} (the reference pi_ref of DPO run {str(path)!r}, its meta.json base_model; "
            "run from the directory the DPO fit ran in, or pass a DPO run whose base model exists)"
        ) from None


class ImplicitReward(torch.nn.Module):
    """The pair ``(pi_dpo, pi_ref)`` and ``beta``: a token-level guide of kind ``"implicit"``.

    It stands where the engine expects a token-level RM: ``config`` is pi_dpo's, marked
    ``argsfw_reward_kind = "implicit"``, and ``get_output_embeddings`` is pi_dpo's (for the
    vocabulary checks). Decoding reads it through `ImplicitRewardState`.
    """

    def __init__(self, policy: torch.nn.Module, reference: torch.nn.Module, beta: float):
        super().__init__()
        self.policy, self.reference, self.beta = policy, reference, float(beta)
        self.config = copy.copy(policy.config)  # why a copy: the marker must not touch pi_dpo's own
        self.config.argsfw_reward_kind = KIND

    def get_output_embeddings(self):
        return self.policy.get_output_embeddings()

    @property
    def flop_model(self) -> torch.nn.Module:
        """The model whose forward FLOPs each reported position costs (`argsfw.decoding.accounting.flop_spec`):
        pi_dpo, which has pi_ref's shape; every position is reported once per model."""
        return self.policy


def load_implicit_reward(spec, dtype="float32", device: str | None = None) -> ImplicitReward:
    """Load a DPO export (``spec``: its run dir or HF dir) and its reference as an `ImplicitReward`.

    Raises:
        ModelPathError: not a DPO export, its reference cannot be found, or the two
            vocabularies differ.
    """
    from argsfw.models.loading import load_policy
    from argsfw.models.paths import ModelPathError, resolve_model_path

    path = resolve_model_path(spec, "reward model")
    _, beta = dpo_guide_parts(path)
    ref_path = reference_path(path)
    policy = load_policy(path, dtype, device)
    reference = load_policy(ref_path, dtype, device)
    v_dpo = policy.get_output_embeddings().weight.shape[0]
    v_ref = reference.get_output_embeddings().weight.shape[0]
    if v_dpo != v_ref:
        raise ModelPathError(
            f"DPO run {str(spec)!r} has a vocabulary of {v_dpo} but its reference {ref_path!r} has "
            f"{v_ref}: the implicit reward compares the two models token by token"
        )
    return ImplicitReward(policy, reference, beta).eval()


def load_token_guide(spec, dtype="float32", device: str | None = None):
    """The token-level guide ``spec`` names: a DPO run's `ImplicitReward`, else the causal LM
    `argsfw.models.reward_kind.load_token_reward_model` loads. Raises `ModelPathError`."""
    from argsfw.models.paths import resolve_model_path
    from argsfw.models.reward_kind import load_token_reward_model, reward_kind

    path = resolve_model_path(spec, "reward model")
    if Path(path).is_dir() and reward_kind(path) == KIND:
        return load_implicit_reward(path, dtype, device)
    return load_token_reward_model(path, dtype, device)


class _SecondModel(RowCursors):
    """Cursors of pi_ref, which reads exactly what pi_dpo reads, each forward right after pi_dpo's.

    The ledger keeps one trie per role and the guide's two models share the ``rm`` role: pi_ref's
    forward joins pi_dpo's (`begin` opens none), so each position counts twice (two models'
    work) and a position is a re-read only when an earlier forward of the pair had read it.
    """

    def __init__(self, first: RowCursors):
        self.ledger, self.slots = first.ledger, list(first.slots)
        self.roots, self.nodes = list(first.roots), list(first.nodes)

    def begin(self) -> None:
        """pi_dpo's forward of the same tokens began it."""


class ImplicitRewardState:
    """The implicit-reward guide decoding in lock-step with the policy (the scorer protocol of
    `argsfw.decoding.search.decode_batch`, and what `argsfw.decoding.token_level.TokenRewardState`
    offers the token-level choosers).

    ``head`` [B, V] (float32, ``out_device``) holds ``beta * (log_softmax(pi_dpo) -
    log_softmax(pi_ref))`` of the next token for every live row; ``total`` [B] accumulates the
    chosen tokens' values when a chooser adds them (GenARM). ``reads`` (`RowCursors` of the rows'
    prompts) is told what both models compute. `keep` takes repeated indices too and `repeat`
    expands rows, so a row can branch into copies (TreeBoN).
    """

    def __init__(
        self,
        guide: ImplicitReward,
        stats: DecodeStats,
        out_device: torch.device,
        reads: RowCursors | None = None,
    ):
        self.guide, self.stats, self.out_device, self.reads = guide, stats, out_device, reads
        self.device = next(guide.policy.parameters()).device
        self.states: list[PolicyState] = []
        self.head: torch.Tensor | None = None
        self.total: torch.Tensor | None = None

    def start(self, ids: torch.Tensor, mask: torch.Tensor, prompts=None) -> None:
        """Read the (left-padded) prompts ``ids``/``mask`` [B, T] once with both models."""
        ids, mask = ids.to(self.device), mask.to(self.device)
        first = self.reads if self.reads is not None else untracked(ids.shape[0])
        self.states = [
            PolicyState(m, ids, mask, self.stats, role="rm", reads=r)
            for m, r in ((self.guide.policy, first), (self.guide.reference, _SecondModel(first)))
        ]
        self._set([s.prefill() for s in self.states])
        self.total = torch.zeros(ids.shape[0], device=self.out_device)

    def commit(self, tokens: torch.Tensor) -> None:
        """Append the chosen ``tokens`` [B] to both models and read the next head."""
        self._set([s.step(tokens) for s in self.states])

    def keep(self, rows: torch.Tensor) -> None:
        """Keep ``rows`` [B'] of the batch (indices may repeat: a row becomes several)."""
        for s in self.states:
            s.keep(rows)
        self.head = self.head[rows.to(self.head.device)]
        self.total = self.total[rows.to(self.total.device)]

    def repeat(self, n: int) -> None:
        """Each row becomes ``n`` rows (row i -> rows i*n ... i*n+n-1) sharing what it has read."""
        for s in self.states:
            s.repeat(n)
        self.head = self.head.repeat_interleave(n, dim=0)
        self.total = self.total.repeat_interleave(n, dim=0)

    def score(self, cands: torch.Tensor, chunk_size=None) -> torch.Tensor:
        """Rewards [B, k] (float32) of candidate tokens ``cands`` [B, k]: the head at each."""
        return self.head.gather(1, cands.to(self.head.device))

    def _set(self, logits: list[torch.Tensor]) -> None:
        dpo, ref = (x.log_softmax(-1) for x in logits)  # float32 [B, V] each
        self.head = (self.guide.beta * (dpo - ref)).to(self.out_device)
        self.stats.rm_cache_bytes_peak = max(
            self.stats.rm_cache_bytes_peak, sum(cache_bytes(s.cache) for s in self.states)
        )
