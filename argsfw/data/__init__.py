"""Preference data: source adapters, the embedded tiny corpus, DataModules and collators.

Every source becomes `PreferencePair(prompt, chosen, rejected, id)` (responses only in
chosen/rejected) or `PromptRecord(id, prompt)`; `load_pairs` / `load_prompts` are the one
entry point. Collators and DataModules are imported lazily: they pull in torch and
Lightning, which the config schema (it imports `DataConfig` from here) should not pay for.
"""

from argsfw.data.config import DataConfig
from argsfw.data.loading import (
    SOURCES,
    load_pairs,
    load_pairs_with_stats,
    load_prompts,
    load_prompts_with_stats,
)
from argsfw.data.tiny import (
    TINY_SIZES,
    OracleVerdict,
    tiny_corpus_texts,
    tiny_oracle,
    tiny_oracle_score,
    tiny_pairs,
    tiny_world,
)
from argsfw.data.types import DataError, DataStats, PreferencePair, PromptRecord

_LAZY = {
    "SFTDataModule": "datamodules",
    "RMDataModule": "datamodules",
    "PromptDataModule": "datamodules",
    "IGNORE_INDEX": "collators",
    "PromptCollator": "collators",
    "RMCollator": "collators",
    "SFTCollator": "collators",
    "TruncationCounts": "collators",
    "tokenize_prompts": "collators",
    "tokenize_rm": "collators",
    "tokenize_sft": "collators",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"argsfw.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'argsfw.data' has no attribute {name!r}")


__all__ = [
    "IGNORE_INDEX",
    "SOURCES",
    "TINY_SIZES",
    "DataConfig",
    "DataError",
    "DataStats",
    "OracleVerdict",
    "PreferencePair",
    "PromptCollator",
    "PromptDataModule",
    "PromptRecord",
    "RMCollator",
    "RMDataModule",
    "SFTCollator",
    "SFTDataModule",
    "TruncationCounts",
    "load_pairs",
    "load_pairs_with_stats",
    "load_prompts",
    "load_prompts_with_stats",
    "tiny_corpus_texts",
    "tiny_oracle",
    "tiny_oracle_score",
    "tiny_pairs",
    "tiny_world",
    "tokenize_prompts",
    "tokenize_rm",
    "tokenize_sft",
]
