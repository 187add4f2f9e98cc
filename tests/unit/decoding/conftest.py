"""Tiny in-process models for the decoding tests (fp32, CPU, built from a config, no network)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

PROMPTS = [
    "\n\nHuman: What is the capital of France?\n\nAssistant:",
    "Hi",
    "\n\nHuman: Can you help me bake bread? I have flour, water and salt.\n\nAssistant: Sure",
    "\n\nHuman: Tell me a joke.",
]


@dataclass
class Models:
    tokenizer: object
    llm: object
    rm: object
    arm: object = None  # a causal LM marked reward_kind "arm" (GenARM)
    token_rm: object = None  # a causal LM marked reward_kind "token" (token-level head)


def _build(texts, arch: str, seed: int = 0) -> Models:
    from argsfw.models import (
        TinySpec,
        build_tiny_policy,
        build_tiny_reward_model,
        build_tiny_token_reward_model,
        train_tokenizer,
    )

    tok = train_tokenizer(texts, vocab_size=400)
    spec = TinySpec(arch=arch, max_position_embeddings=128)
    return Models(
        tok,
        build_tiny_policy(tok, spec, seed),
        build_tiny_reward_model(tok, spec, seed + 1),
        build_tiny_token_reward_model(tok, spec, seed + 2, kind="arm"),
        build_tiny_token_reward_model(tok, spec, seed + 3, kind="token"),
    )


@pytest.fixture(scope="session")
def llama(tiny_texts) -> Models:
    return _build(tiny_texts, "llama")


@pytest.fixture(scope="session")
def opt(tiny_texts) -> Models:
    return _build(tiny_texts, "opt")


@pytest.fixture(scope="session", params=["llama", "opt"])
def models(request) -> Models:
    return request.getfixturevalue(request.param)


@pytest.fixture
def prompts() -> list[str]:
    return list(PROMPTS)
