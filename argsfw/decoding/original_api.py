"""The original ARGS Python API, kept working on top of the fast engine.

    from argsfw import ARGS
    searcher = ARGS(llm_path=LLM_PATH, rm_path=RM_PATH, llm_dev="cuda:0", rm_dev="cuda:1")
    output_tokens = searcher.generate(text, topk=10, weight=1.0, method="greedy")
    print(searcher.tokens_to_text(output_tokens)[0])

Differences from the original code, all fixes: generation stops after the EOS token (kept);
``"greedy-large"`` and ``"greedy_large"`` are both accepted; ``chunk_size`` and ``temperature``
are honoured; the RM may use a different tokenizer; a list of prompts decodes in batches.
A token-level RM (a causal LM: GenARM's autoregressive RM, or a token-level reward head) given
as ``rm_path`` is loaded as a causal LM and decodes with the methods that read one (GenARM, token-rm).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from argsfw.decoding.accounting import DecodeStats
from argsfw.decoding.config import decode_settings
from argsfw.decoding.engine import ArgsDecoder
from argsfw.decoding.methods.args import DEFAULT_WEIGHT
from argsfw.decoding.registry import get_method
from argsfw.decoding.types import RewardKind

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
)


class ARGS:
    """Reward-guided search with the original constructor and ``generate``/``tokens_to_text`` methods.

    Args:
        llm_path: the policy (a Hugging Face directory, an argsfw run directory or a hub id).
        rm_path: the reward model (same kinds of input). Its own tokenizer is used if its
            directory has one, else the policy's. A sequence classifier serves the ARGS
            methods and best-of-n; a causal LM (``reward_kind`` "arm" or "token", see
            `argsfw.models.reward_kind`) serves genarm / token-rm.
        llm_dev, rm_dev: devices; default CUDA when present, else CPU. The RM defaults to the
            policy's device.
        torch_dtype: dtype for both models (a torch dtype or a name such as ``"bf16"``);
            default float16 on CUDA (as the original) and float32 on CPU.

    Raises:
        argsfw.models.ModelPathError: a path that is missing or holds no model, named.
    """

    def __init__(
        self,
        llm_path: str | os.PathLike,
        rm_path: str | os.PathLike,
        llm_dev: str | None = None,
        rm_dev: str | None = None,
        torch_dtype: torch.dtype | str | None = None,
    ):
        from argsfw.models import (
            default_device,
            load_policy,
            load_reward_model,
            load_tokenizer,
            resolve_model_path,
        )

        self.llm_dev = llm_dev or default_device()
        self.rm_dev = rm_dev or self.llm_dev
        if torch_dtype is None:
            torch_dtype = (
                torch.float16 if torch.device(self.llm_dev).type == "cuda" else torch.float32
            )
        self.tokenizer = load_tokenizer(llm_path, "policy tokenizer")
        rm_dir = Path(resolve_model_path(rm_path, "reward model"))
        has_tok = rm_dir.is_dir() and any((rm_dir / f).is_file() for f in _TOKENIZER_FILES)
        self.rm_tokenizer = (
            load_tokenizer(rm_dir, "reward model tokenizer") if has_tok else self.tokenizer
        )
        self.LLM = load_policy(llm_path, dtype=torch_dtype, device=self.llm_dev)
        from argsfw.decoding.implicit import load_token_guide
        from argsfw.models.reward_kind import is_causal_lm_config, reward_kind

        kind = reward_kind(rm_dir) if rm_dir.is_dir() else None
        if (kind is not None and RewardKind(kind).causal_lm) or (
            kind is None and is_causal_lm_config(rm_dir)
        ):
            self.RM = load_token_guide(rm_dir, dtype=torch_dtype, device=self.rm_dev)
        else:
            self.RM = load_reward_model(
                rm_path, dtype=torch_dtype, device=self.rm_dev, tokenizer=self.rm_tokenizer
            )
        self.decoder = ArgsDecoder(self.LLM, self.tokenizer, self.RM, self.rm_tokenizer)
        self.last_stats: DecodeStats | None = None

    def generate(
        self,
        prompt: str | list[str],
        weight: float = DEFAULT_WEIGHT,
        topk: int = 1,
        max_new_token: int = 128,
        method: str = "greedy",
        temperature: float | None = None,
        chunk_size: int | str = 5,
        debug: bool = False,
        *,
        batch_size: int = 8,
        seed: int = 0,
        top_p: float = 0.9,
        num_samples: int = 4,
        truncate_prompt: bool = False,
        stop_at_eos: bool = True,
        alpha: float = 1.0,
        gate_threshold: float = 0.5,
        **knobs,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Decode ``prompt``; returns a LongTensor (1, n_prompt + n_new) on the policy's device, starting with the prompt tokens.

        ``method``: the original API's ``greedy`` (ARGS-greedy), ``topk`` (ARGS-stochastic:
        sample from ``softmax(score / temperature)`` over the k candidates) and ``greedy-large``
        / ``greedy_large`` (ARGS-greedy scoring ``chunk_size`` candidates per RM forward, an int
        or ``auto``), or any registered method (``python -m argsfw.methods`` lists them and the
        knobs each reads: ``gate_threshold``, ``alpha``, ``top_p``, ``num_samples`` ...) or
        ``pkg.module:METHOD``. ``temperature=None`` samples at the method's default (0.7; GenARM
        ``1 / (1 + alpha)``). ``weight`` defaults to the paper's 1.5, as everywhere in argsfw.
        The knobs a method does not read are ignored (as the original ignored ``chunk_size`` for
        ``greedy``); ``**knobs`` sets other knobs of the method (one of one's own included, e.g.
        ``rep_penalty=2``), and one it does not have is an error.
        Decoding stops after EOS (kept) or at ``max_new_token``. A list
        of prompts returns a list of such tensors, in order, decoded ``batch_size`` at a time.
        ``debug=True`` logs every step on the ``argsfw.decoding`` logger at DEBUG level.
        The call's cost is left in ``self.last_stats``.

        Raises:
            argsfw.decoding.DecodeInputError: bad input (the message says which and why).
            argsfw.decoding.NonFiniteRewardError: the RM returned NaN/inf (names the step).
        """
        found = get_method(method, original_api=True)
        settings = decode_settings(
            found.name if ":" not in str(method) else str(method),
            lenient=True,
            weight=weight,
            alpha=alpha,
            topk=topk,
            max_new_tokens=max_new_token,
            temperature=temperature,
            top_p=top_p,
            num_samples=num_samples,
            gate_threshold=gate_threshold,
            chunk_size=chunk_size,
            stop_at_eos=stop_at_eos,
            batch_size=batch_size,
            seed=seed,
            truncate_prompt=truncate_prompt,
            debug=debug and found.counts_scored_steps,
        )
        if knobs:
            settings = decode_settings(settings.method, settings, **knobs)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        gens, self.last_stats = self.decoder.generate(prompts, settings)
        tensors = [torch.tensor([g.ids], dtype=torch.long, device=self.LLM.device) for g in gens]
        return tensors[0] if isinstance(prompt, str) else tensors

    def tokens_to_text(self, tokens: torch.Tensor | list[torch.Tensor]) -> list[str]:
        """Decode token rows (a (B, T) tensor or a list of (1, T) tensors) to strings, special tokens skipped."""
        if isinstance(tokens, torch.Tensor):
            return self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [
            text
            for t in tokens
            for text in self.tokenizer.batch_decode(t, skip_special_tokens=True)
        ]
