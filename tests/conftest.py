"""Shared fixtures: tiny models built in-process, the real HH-RLHF samples in ../shared/data.

Also how the suite spreads over pytest-xdist workers (`make test`: ``-n 2 --dist loadscope``):
each test module goes to one worker, so a module-scoped fixture is built once; the tiny
pipeline, which several modules share, is built once per run in the background, and tests
marked ``serial`` (2-process runs) take turns (both in tests/integration/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub; W&B never needs an account.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# One intra-op thread per process (each xdist worker, each subprocess a test starts): tiny models
# gain nothing from more, and two workers would otherwise oversubscribe the two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
# ARGSFW_SHARED_DATA: where a checkout (a git worktree) does not sit next to shared/
SHARED_DATA = Path(os.environ.get("ARGSFW_SHARED_DATA") or REPO.parent / "shared" / "data")

_TEXTS = [
    "\n\nHuman: What is the capital of France?\n\nAssistant: The capital of France is Paris.",
    "\n\nHuman: Can you help me bake bread?\n\nAssistant: Sure! Mix flour, water, yeast and salt.",
    "\n\nHuman: How many legs does a spider have?\n\nAssistant: A spider has eight legs.",
    "\n\nHuman: Tell me a joke.\n\nAssistant: Why did the chicken cross the road? To get to the other side.",
    "\n\nHuman: What is two plus two?\n\nAssistant: Two plus two is four. I am happy to help with more.",
] * 40


# Built once per test run by a background process while the other tests run (see
# tests/integration/conftest.py); the tests using it run last.
SHARED_ONCE = "tiny_pipeline"


def pytest_collection_modifyitems(config, items):
    """Move the test modules that use `SHARED_ONCE` to the end of the run.

    Why: under ``--dist loadscope --no-loadscope-reorder`` (make test) the workers take whole
    modules in this order; the shared build then has the rest of the run to finish before
    a test waits for it. Otherwise the order stays as collected: integration tests, then the
    short unit tests, which even out the end of the run.
    """
    late = {str(item.path) for item in items if SHARED_ONCE in item.fixturenames}
    items[:] = sorted(items, key=lambda item: str(item.path) in late)  # stable


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine OpenMP spin-waits between
    contending threads made every op ~100x slower. (Subprocesses get OMP_NUM_THREADS from make.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def benchmark_module():
    """Import a script of ``benchmarks/`` by its file name (the folder is not a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real HH-RLHF test files; skipped with the reason when ../shared/data is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real HH-RLHF samples not found at {SHARED_DATA} (the project's shared/data folder)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    return list(_TEXTS)


@pytest.fixture(scope="session")
def tiny_kit(tmp_path_factory) -> dict[str, Path]:
    """A tiny Llama policy and reward model sharing one BPE tokenizer, saved as HF dirs."""
    from argsfw.models import make_tiny_kit

    return make_tiny_kit(tmp_path_factory.mktemp("tiny_kit"), _TEXTS, vocab_size=512, seed=0)


@pytest.fixture(scope="session")
def tiny_opt_kit(tmp_path_factory) -> dict[str, Path]:
    """The same as `tiny_kit` with the OPT architecture."""
    from argsfw.models import TinySpec, make_tiny_kit

    return make_tiny_kit(
        tmp_path_factory.mktemp("tiny_opt_kit"), _TEXTS, spec=TinySpec(arch="opt"), vocab_size=512
    )


@pytest.fixture(scope="session")
def token_kit(tiny_kit, tmp_path_factory) -> dict[str, Path]:
    """Token-level RMs for `tiny_kit`'s policy, saved as HF dirs with its tokenizer.

    ``arm`` (reward_kind "arm", marked in config.json), ``token`` (reward_kind "token", marked
    in meta.json only, as a fit run writes it), ``unmarked`` (a plain causal LM) and
    ``other_vocab`` (a "token" RM with a different vocabulary).
    """
    import json

    from transformers import AutoTokenizer

    from argsfw.models import TinySpec, build_tiny_token_reward_model, save_hf, train_tokenizer

    tok = AutoTokenizer.from_pretrained(tiny_kit["policy"])
    out = tmp_path_factory.mktemp("token_kit")
    kit = {
        "arm": save_hf(build_tiny_token_reward_model(tok, TinySpec(), 11, "arm"), tok, out / "arm")
    }
    token = build_tiny_token_reward_model(tok, TinySpec(), 12, "token")
    del token.config.argsfw_reward_kind
    kit["token"] = save_hf(token, tok, out / "token")
    (kit["token"] / "meta.json").write_text(json.dumps({"reward_kind": "token"}))
    unmarked = build_tiny_token_reward_model(tok, TinySpec(), 13, "token")
    del unmarked.config.argsfw_reward_kind
    kit["unmarked"] = save_hf(unmarked, tok, out / "unmarked")
    other = train_tokenizer(_TEXTS[::2], vocab_size=300)
    kit["other_vocab"] = save_hf(
        build_tiny_token_reward_model(other, TinySpec(), 14, "token"), other, out / "other_vocab"
    )
    return kit
