"""The decoding engine: reward-guided search (ARGS) and baselines, pure torch + transformers.

Entry points: `ArgsDecoder` (batches of prompts, settings from `decode_settings`, returns
`Generation`s and `DecodeStats`) and `ARGS` (the original API). `reference_decode` is the slow,
obviously right path the tests hold the engine against (`reference_token_decode` for the
token-level-RM methods, GenARM and token-rm).

Names are imported lazily: ``argsfw.config`` imports `DecodeConfig` from here, and must not pay
for torch and transformers just to validate a config.
"""

from __future__ import annotations

import importlib

from argsfw.decoding.config import DecodeConfig, decode_settings

_LAZY = {
    "ARGS": "argsfw.decoding.original_api",
    "ArgsDecoder": "argsfw.decoding.engine",
    "auto_chunk_size": "argsfw.decoding.engine",
    "DecodeStats": "argsfw.decoding.accounting",
    "reference_decode": "argsfw.decoding.reference",
    "reference_token_decode": "argsfw.decoding.reference",
    "Method": "argsfw.decoding.registry",
    "get_method": "argsfw.decoding.registry",
    "methods": "argsfw.decoding.registry",
    "register": "argsfw.decoding.registry",
    "resolve_method": "argsfw.decoding.registry",
    "DecodeInputError": "argsfw.decoding.types",
    "Generation": "argsfw.decoding.types",
    "NonFiniteRewardError": "argsfw.decoding.types",
    "PromptTooLongError": "argsfw.decoding.types",
    "UnknownMethodError": "argsfw.decoding.types",
}

__all__ = ["DecodeConfig", "decode_settings", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'argsfw.decoding' has no attribute {name!r}")
