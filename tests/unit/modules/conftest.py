"""Helpers for the stage tests: compose a tiny job with small overrides."""

from __future__ import annotations

import pytest

SMALL = [
    "model.tiny.hidden_size=32",
    "model.tiny.intermediate_size=64",
    "model.tiny.num_heads=2",
    "logger.name=none",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture
def tiny_job():
    """compose(recipe, *overrides) with the small-model overrides above."""
    from argsfw.config.compose import compose

    def make(recipe: str, *overrides: str):
        return compose([f"recipe={recipe}", *SMALL, *overrides])

    return make
