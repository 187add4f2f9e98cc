"""`ArgsDecoder`: the batch-level engine the original API and the Lightning predict module wrap.

It validates settings and prompts (one-line `ValueError` subclasses), tokenizes, groups
prompts of similar length into batches, picks the scorer (cached shared-tokenizer path,
cross-tokenizer path, or none) and the chooser for the method, and returns a `Generation` per
prompt in input order plus one `DecodeStats` for the call.
"""

from __future__ import annotations

import dataclasses

import torch

from argsfw.decoding.accounting import DecodeStats, Meter, flop_spec
from argsfw.decoding.config import (
    DEFAULT_METHOD,
    DecodeConfig,
    check_decode_settings,
    decode_settings,
    sampling_temperature,
)
from argsfw.decoding.cross_tokenizer import retokenizer
from argsfw.decoding.policy import PolicyState, context_length, left_pad
from argsfw.decoding.probe import ScorerSpec, probe_scorer, usable_scorers
from argsfw.decoding.registry import Parts, get_method
from argsfw.decoding.sampling import make_generator
from argsfw.decoding.scoring import model_device_dtype, rm_attention
from argsfw.decoding.search import decode_batch, log
from argsfw.decoding.token_level import check_guide_kind, check_token_rm_vocab, guide_kind
from argsfw.decoding.types import DecodeInputError, Generation, PromptTooLongError, RewardKind


def rm_context_length(config) -> int | None:
    """The RM's usable context: its positions, limited to its sliding window if it has one."""
    ctx = context_length(config)
    window = getattr(config, "sliding_window", None)
    if (
        isinstance(window, int)
        and window > 0
        and getattr(config, "use_sliding_window", True) is not False
    ):
        ctx = min(ctx, window) if ctx else window
    return ctx


def auto_chunk_size(rm, rows: int, length: int, k: int) -> int:
    """Candidates per RM forward that fit in about half the free memory of the RM's device (at least 1, at most k).

    Estimate per candidate and row: attention scores over ``length + k`` keys for every head
    (x2 for softmax temporaries) plus a few hidden-size activations, in the RM's dtype.
    """
    device, dtype = model_device_dtype(rm)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0] * 0.5
    else:
        import psutil

        free = psutil.virtual_memory().available * 0.25  # CPU memory is shared with everything else
    cfg = rm.config
    heads = getattr(cfg, "num_attention_heads", 16)
    hidden = getattr(cfg, "hidden_size", 1024)
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "ffn_dim", None) or 4 * hidden
    per_cand = (
        rows * torch.finfo(dtype).bits // 8 * (2 * heads * (length + k) + 4 * hidden + 2 * inter)
    )
    return int(max(1, min(k, free // max(per_cand, 1))))


class ArgsDecoder:
    """Reward-guided search and its baselines over batches of prompts.

    Args:
        llm: a causal LM (`AutoModelForCausalLM`), in eval mode, on any device and dtype.
        llm_tokenizer: its tokenizer; prompts are tokenized with its defaults (BOS added when
            it adds one; no chat template), as the original ARGS code does.
        rm: a scalar reward model (`AutoModelForSequenceClassification`, ``num_labels=1``):
            a decoder (Llama, OPT, GPT-2, Bloom ...) or an encoder (BERT, RoBERTa, DeBERTa ...);
            or a token-level RM (a causal LM with the policy's vocabulary, for ``genarm`` and
            ``token-rm``; see `argsfw.decoding.token_level`); or None for the baselines that
            need none. It may sit on another device or dtype and need not have a pad token.
        rm_tokenizer: the RM's tokenizer if it differs from the policy's (then candidates are
            scored by detokenizing and re-tokenizing, see `argsfw.decoding.cross_tokenizer`).

    An RM is probed once here (`argsfw.decoding.probe`): the fastest scorer that reproduces
    its full-sequence rewards is used (``self.probe.scorer``) unless a call forces one with
    ``scorer=``.

    Raises:
        DecodeInputError: if ``rm`` is neither a one-label sequence classifier whose rewards
            some scorer reproduces nor a causal LM with the policy's vocabulary.
    """

    def __init__(self, llm, llm_tokenizer, rm=None, rm_tokenizer=None):
        from argsfw.models import check_tokenizer_compat

        self.llm, self.tokenizer, self.rm = llm.eval(), llm_tokenizer, rm
        self.rm_tokenizer = rm_tokenizer if rm_tokenizer is not None else llm_tokenizer
        self.shared_tokenizer = True
        # what the guide is read as (a RewardKind; None: an unmarked causal LM); not to be
        # confused with scoring.rm_attention, how a sequence RM's classifier reads a sequence
        self.reward_kind = guide_kind(rm) if rm is not None else None
        if rm is not None:
            rm.eval()
            if self.reward_kind is RewardKind.SEQUENCE:
                rm_attention(rm)  # fail now, not mid-search, on an unusable RM
            else:
                check_token_rm_vocab(llm, rm, llm_tokenizer, rm_tokenizer)
            if self.rm_tokenizer is not llm_tokenizer:
                self.shared_tokenizer = check_tokenizer_compat(
                    llm_tokenizer, self.rm_tokenizer
                ).same
        self.device, _ = model_device_dtype(llm)
        # forward FLOPs per position and attended key of each model (the per-record cost)
        self.flops = {"llm": flop_spec(llm), "rm": flop_spec(rm) if rm is not None else None}
        self.vocab = llm.get_output_embeddings().weight.shape[0]
        self.llm_ctx = context_length(llm.config)
        self.rm_ctx = rm_context_length(rm.config) if rm is not None else None
        self.probe = None
        if rm is not None and self.reward_kind is RewardKind.SEQUENCE:  # token-level: no scorer
            self.scorer_spec = ScorerSpec(
                rm, llm_tokenizer, None if self.shared_tokenizer else self.rm_tokenizer, self.rm_ctx
            )
            self.probe = probe_scorer(self.scorer_spec)
            log.info(
                "reward model %s: %s scorer (probe: %s)",
                type(rm).__name__,
                self.probe.scorer,
                self.probe.summary(),
            )
        eos = llm.generation_config.eos_token_id if llm.generation_config is not None else None
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if llm_tokenizer.eos_token_id is not None:
            eos.append(llm_tokenizer.eos_token_id)
        self.eos_ids = sorted(set(eos))
        pad = llm_tokenizer.pad_token_id
        self.pad_id = (
            pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        )  # masked anyway

    # ------------------------------------------------------------------ public API
    def generate(
        self,
        prompts: list[str],
        settings: DecodeConfig | None = None,
        keys: list | None = None,
        **overrides,
    ) -> tuple[list[Generation], DecodeStats]:
        """Decode every prompt with ``settings`` (fields may be overridden by keyword).

        ``settings``: `decode_settings` (``decode_settings(NAME, weight=2.0)``) or a
        `DecodeConfig`; keywords set the shared keys and the method's own knobs
        (``method=NAME, top_p=0.8``). A ``method`` keyword switches method: the shared
        keys of ``settings`` carry over, and its knobs that the new method also has.

        ``keys`` name the prompts for seeding (default: the prompt text), so a prompt's sample
        is the same whichever batch or rank decodes it; give dataset ids when prompts repeat.
        Returns one `Generation` per prompt, in input order, and the call's `DecodeStats`.

        Raises:
            DecodeInputError: bad settings, an empty prompt, a prompt too long for a model's
                context (unless ``truncate_prompt``), a missing reward model.
            NonFiniteRewardError: the RM returned NaN/inf (the message names the step).
        """
        if isinstance(prompts, str):
            raise DecodeInputError(
                "prompts must be a list of strings; wrap a single prompt in a list"
            )
        ids = [list(self.tokenizer(p).input_ids) for p in prompts]
        return self.generate_ids(
            ids,
            settings,
            keys=keys if keys is not None else list(prompts),
            prompts=prompts,
            **overrides,
        )

    def generate_ids(
        self,
        prompt_ids: list[list[int]],
        settings: DecodeConfig | None = None,
        keys: list | None = None,
        prompts: list[str] | None = None,
        **overrides,
    ) -> tuple[list[Generation], DecodeStats]:
        """`generate` for already tokenized prompts (policy token ids); ``keys`` default to the prompt index."""
        method = overrides.pop("method", None) or (settings.method if settings else None)
        s = self.check_settings(decode_settings(method or DEFAULT_METHOD, settings, **overrides))
        method = get_method(s.method)
        prompt_ids = [self._fit_prompt(i, list(p), s) for i, p in enumerate(prompt_ids)]
        prompts = (
            list(prompts)
            if prompts is not None
            else [self.tokenizer.decode(p, skip_special_tokens=True) for p in prompt_ids]
        )
        keys = list(keys) if keys is not None else list(range(len(prompt_ids)))
        stats = DecodeStats(method=method.name, prompts=len(prompt_ids))
        devices = [self.device] + ([model_device_dtype(self.rm)[0]] if self.rm is not None else [])
        meter = Meter(stats, devices)
        out: list[Generation | None] = [None] * len(prompt_ids)
        order = sorted(
            range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i])
        )  # similar lengths share a batch
        for lo in range(0, len(order), s.batch_size):
            batch = order[lo : lo + s.batch_size]
            for i, g in zip(
                batch, self._decode(method, s, [prompt_ids[i] for i in batch], batch, keys, meter)
            ):
                cost = self._cost(meter, i)
                out[i] = Generation(
                    index=i,
                    prompt=prompts[i],
                    prompt_ids=prompt_ids[i],
                    new_ids=g.new_ids,
                    text=self.tokenizer.decode(g.new_ids, skip_special_tokens=True),
                    finished=g.finished,
                    reward=g.reward,
                    scored_steps=g.scored_steps if method.counts_scored_steps else None,
                    **cost,
                )
        return out, meter.stop()

    def _cost(self, meter: Meter, slot: int) -> dict:
        """Prompt ``slot``'s positions, re-reads and FLOPs per model, from the batch's ledgers."""
        cost = {}
        for role in ("llm", "rm"):
            t, spec = meter.tally(role, slot), self.flops[role]
            cost[f"{role}_tokens"] = t.positions
            cost[f"{role}_reread"] = t.rereads
            cost[f"{role}_flops"] = spec.flops(t.positions, t.context) if spec else 0.0
        return cost

    # ------------------------------------------------------------------ validation
    def check_settings(self, s: DecodeConfig) -> DecodeConfig:
        """Validate ``s`` against the models; returns it, temperature resolved. Raises `DecodeInputError` with a one-line reason."""
        method = check_decode_settings(s, self.vocab)
        s = decode_settings(s.method, s)  # a bare DecodeConfig gets the method's knobs
        needs_rm = method.uses_guide(s)
        if needs_rm and self.rm is None:
            knob = (
                f" with {method.guide_knob}={getattr(s, method.guide_knob)}"
                if method.guide_knob
                else ""
            )
            raise DecodeInputError(f"{method.name}{knob} needs a reward model; none was given")
        if needs_rm:
            check_guide_kind(method, self.reward_kind)
        if self.probe is not None and s.scorer not in ("auto", *usable_scorers(self.rm)):
            raise DecodeInputError(
                f"scorer={s.scorer} cannot read {type(self.rm).__name__}: a bidirectional reward "
                "model has no prefix cache; use scorer=full or auto"
            )
        if needs_rm and method.check_models is not None:
            method.check_models(self, s)
        # None becomes the method's own temperature here, so every sampler gets a number
        if hasattr(s, "temperature"):
            s = dataclasses.replace(s, temperature=sampling_temperature(s))
        return s

    def scorer_name(self, s: DecodeConfig | None = None) -> str | None:
        """The scorer a call with settings ``s`` uses (None without a sequence reward model)."""
        if self.probe is None:
            return None
        forced = (s or DecodeConfig()).scorer
        return self.probe.scorer if forced == "auto" else forced

    def _fit_prompt(self, i: int, ids: list[int], s: DecodeConfig) -> list[int]:
        if not ids:
            raise DecodeInputError(
                f"prompt {i} is empty: it tokenizes to no tokens, so there is nothing to condition on"
            )
        limits = [("policy", self.llm_ctx)]
        if self.rm is not None and self.shared_tokenizer:
            limits.append(("reward model", self.rm_ctx))
        for name, ctx in limits:
            if ctx is None or len(ids) + s.max_new_tokens <= ctx:
                continue
            room = ctx - s.max_new_tokens
            if not s.truncate_prompt or room < 1:
                raise PromptTooLongError(
                    f"prompt {i} has {len(ids)} tokens; with max_new_tokens={s.max_new_tokens} it needs "
                    f"{len(ids) + s.max_new_tokens} positions but the {name}'s context is {ctx} "
                    + (
                        "(max_new_tokens alone fills it)"
                        if room < 1
                        else "(set truncate_prompt=True to keep its last tokens)"
                    )
                )
            bos = self.tokenizer.bos_token_id
            keep_bos = bos is not None and ids[0] == bos and room > 1
            ids = ([bos] + ids[len(ids) - room + 1 :]) if keep_bos else ids[len(ids) - room :]
        if self.rm is not None and not self.shared_tokenizer and self.rm_ctx is not None:
            n_rm = len(retokenizer(self.tokenizer, self.rm_tokenizer)([ids])[0])
            if n_rm >= self.rm_ctx:
                raise PromptTooLongError(
                    f"prompt {i} re-tokenizes to {n_rm} reward-model tokens, over its context of {self.rm_ctx}"
                )
        return ids

    # ------------------------------------------------------------------ one batch
    def _decode(
        self,
        method,
        s: DecodeConfig,
        prompts: list[list[int]],
        rows: list[int],
        keys: list,
        meter: Meter,
    ):
        meter.open_batch({role: spec.window for role, spec in self.flops.items() if spec})
        ids, mask = left_pad(prompts, self.pad_id, self.device)
        policy = PolicyState(self.llm, ids, mask, meter.stats, reads=meter.cursors("llm", rows))
        eos = self.eos_ids if s.stop_at_eos else []
        parts = Parts(self, s, policy, prompts, rows, keys, eos, meter)
        if method.run is not None:  # a whole-sequence method (best-of-N ...)
            return method.run(parts)
        scorer, chooser = method.build(parts)
        gens = [make_generator(s.seed, keys[r]) for r in rows]
        return decode_batch(
            policy, scorer, chooser, prompts, rows, gens, s.max_new_tokens, eos, meter
        )
