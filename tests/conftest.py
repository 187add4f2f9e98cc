"""Shared fixtures: tiny models built in-process, the real HH-RLHF samples in ../shared/data.

Also how the suite spreads over pytest-xdist workers (`make test`: ``-n 2 --dist loadgroup``):
tests that share an expensive fixture are one work unit (`pytest_collection_modifyitems`), so
the fixture is built once per run, not once per worker; tests marked ``serial`` (2-process
runs that need both cores) run in a second, single-process pass.
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


# Session fixtures too expensive to build once per worker: every test using one (directly or
# through another fixture) joins that fixture's xdist group, so one worker builds it.
SHARED_ONCE = ("tiny_pipeline",)


def _xdist_group(item: pytest.Item) -> str | None:
    """The work unit `item` belongs to: a `SHARED_ONCE` fixture's name, else its module's path
    when it uses a fixture of module scope (built once per module, so the module stays on one
    worker); None: the test is a unit of its own."""
    names = item.fixturenames
    for name in SHARED_ONCE:
        if name in names:
            return name
    infos = getattr(item, "_fixtureinfo", None)
    defs = infos.name2fixturedefs if infos else {}
    if any(d.scope == "module" for name in names for d in defs.get(name, ())):
        return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
    """Mark each test's xdist group; the `SHARED_ONCE` groups first.

    Why first: the tiny pipeline and the tests on it are the longest chain of work one worker
    must run in a row, so it starts at once while the other worker takes everything else
    (``--no-loadscope-reorder`` keeps this order: integration tests, then the short unit tests,
    which even out the end of the run).
    """
    first = []
    for item in items:
        group = _xdist_group(item)
        if group and not any(True for _ in item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(group))
        first.append(group not in SHARED_ONCE)
    order = sorted(range(len(items)), key=lambda i: first[i])  # stable: otherwise as collected
    items[:] = [items[i] for i in order]


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
