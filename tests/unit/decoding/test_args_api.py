"""The original API: `from argsfw import ARGS` on tiny saved models."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from argsfw.models import ModelPathError


@pytest.fixture(scope="module")
def searcher(tiny_kit):
    from argsfw import ARGS

    return ARGS(
        llm_path=tiny_kit["policy"], rm_path=tiny_kit["reward_model"], llm_dev="cpu", rm_dev="cpu"
    )


def test_generate_returns_prompt_plus_new_tokens(searcher):
    text = "\n\nHuman: How many legs does a spider have?\n\nAssistant:"
    out = searcher.generate(text, topk=4, weight=1.0, method="greedy", max_new_token=6)
    prompt_ids = searcher.tokenizer(text).input_ids
    assert out.dtype == torch.long and out.shape[0] == 1
    assert out[0, : len(prompt_ids)].tolist() == prompt_ids
    n_new = out.shape[1] - len(prompt_ids)
    assert n_new == 6 or (1 <= n_new < 6 and out[0, -1].item() == searcher.tokenizer.eos_token_id)
    assert (
        searcher.tokens_to_text(out)[0].startswith(text.strip()[:10])
        or text in searcher.tokens_to_text(out)[0]
    )
    st = searcher.last_stats
    assert st.new_tokens == n_new and st.rm_forwards == n_new


def test_all_method_spellings(searcher):
    text = "\n\nHuman: Tell me a joke.\n\nAssistant:"
    greedy = searcher.generate(text, topk=5, weight=1.0, method="greedy", max_new_token=5)
    for m in ("greedy-large", "greedy_large"):
        for cs in (2, "auto"):
            out = searcher.generate(
                text, topk=5, weight=1.0, method=m, chunk_size=cs, max_new_token=5
            )
            assert torch.equal(out, greedy)
    a = searcher.generate(text, topk=5, weight=1.0, method="topk", temperature=0.7, max_new_token=5)
    b = searcher.generate(text, topk=5, weight=1.0, method="topk", temperature=0.7, max_new_token=5)
    assert torch.equal(a, b)  # seeded per prompt
    for m in ("top-k", "nucleus", "best-of-n"):
        assert searcher.generate(text, topk=5, method=m, max_new_token=3).shape[0] == 1


def test_gate_threshold_reaches_args_gated(searcher):
    """``gate_threshold`` is honoured: 1 scores every step (= args-greedy), 0 none."""
    text = "\n\nHuman: Tell me a joke.\n\nAssistant:"
    kw = dict(topk=4, weight=1.0, max_new_token=5)
    always = searcher.generate(text, method="args-gated", gate_threshold=1.0, **kw)
    assert searcher.last_stats.rm_forwards > 0
    assert torch.equal(always, searcher.generate(text, method="args-greedy", **kw))
    searcher.generate(text, method="args-gated", gate_threshold=0.0, **kw)
    assert searcher.last_stats.rm_forwards == 0


def test_list_of_prompts_in_batches(searcher):
    prompts = ["\n\nHuman: hi", "\n\nHuman: What is two plus two?\n\nAssistant:", "Sure"]
    outs = searcher.generate(prompts, topk=3, weight=1.0, max_new_token=4, batch_size=2)
    assert isinstance(outs, list) and len(outs) == 3
    for p, o in zip(prompts, outs):
        assert torch.equal(o, searcher.generate(p, topk=3, weight=1.0, max_new_token=4))
    texts = searcher.tokens_to_text(outs)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


def test_debug_logs_through_logging(searcher, caplog):
    with caplog.at_level(logging.DEBUG, logger="argsfw.decoding"):
        searcher.generate("Human: hi", topk=3, weight=1.0, max_new_token=2, debug=True)
    steps = [r.getMessage() for r in caplog.records if r.name == "argsfw.decoding"]
    assert len(steps) == 2 and "step 1 prompt 0: chose" in steps[0] and "reward=" in steps[0]


def test_bad_input_messages(searcher, tmp_path):
    from argsfw import ARGS

    with pytest.raises(ValueError, match="valid methods"):
        searcher.generate("hi", method="beam")
    with pytest.raises(ValueError, match="topk"):
        searcher.generate("hi", topk=0)
    with pytest.raises(ModelPathError, match="does not exist"):
        ARGS(llm_path=tmp_path / "nope", rm_path=tmp_path / "nope")


def test_import_argsfw_stays_light():
    code = (
        "import sys, argsfw; from argsfw.decoding import DecodeConfig; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "assert callable(argsfw.ARGS)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
