"""Evaluation: reward, diversity, coherence, pairwise judge, cost; report, plots and W&B.

Names are imported lazily so ``import argsfw.eval`` (and CLI argument parsing) stays fast;
torch, transformers and sentence-transformers load only when a metric runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from argsfw.eval.config import EvalConfig, JudgeConfig
from argsfw.eval.inputs import EvalInput, EvalInputError, EvalRecord, load_inputs, load_outputs

_LAZY = {
    "run_evaluation": "argsfw.eval.run",
    "diversity": "argsfw.eval.diversity",
    "response_diversity": "argsfw.eval.diversity",
    "rep_n": "argsfw.eval.diversity",
    "word_tokens": "argsfw.eval.diversity",
    "score_texts": "argsfw.eval.reward",
    "load_reward": "argsfw.eval.reward",
    "reward_texts": "argsfw.eval.reward",
    "load_embedder": "argsfw.eval.coherence",
    "coherence": "argsfw.eval.coherence",
    "judge_pair": "argsfw.eval.judge",
    "judge_all": "argsfw.eval.judge",
    "parse_scores": "argsfw.eval.judge",
    "JudgeError": "argsfw.eval.judge",
    "OpenAIChatClient": "argsfw.eval.judge",
    "HFChatClient": "argsfw.eval.judge",
    "cost_metrics": "argsfw.eval.stats",
    "wilson_interval": "argsfw.eval.stats",
}

__all__ = [
    "EvalConfig",
    "EvalInput",
    "EvalInputError",
    "EvalRecord",
    "JudgeConfig",
    "load_inputs",
    "load_outputs",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'argsfw.eval' has no attribute {name!r}")
