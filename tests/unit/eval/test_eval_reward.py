"""Reward: batched scores equal one-by-one forward passes; cut-at-human; skip-and-count."""

from __future__ import annotations

import pytest
import torch

from argsfw.eval.inputs import EvalRecord
from argsfw.eval.reward import load_reward, reward_texts, score_texts
from argsfw.eval.stats import mean_stderr

TEXTS = [
    "\n\nHuman: What is two plus two?\n\nAssistant: Four.",
    "\n\nHuman: Can you help me bake bread?\n\nAssistant: Sure! Mix flour, water, yeast and salt, then wait.",
    "\n\nHuman: Hi\n\nAssistant: Hello there, how can I help you today with anything at all?",
]


@pytest.fixture(scope="module")
def rm(tiny_kit):
    return load_reward(tiny_kit["reward_model"], device="cpu")


def _direct(model, tokenizer, text: str) -> float:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids).logits.flatten().item()


def test_batched_equals_direct_forward(rm):
    model, tok = rm
    res = score_texts(TEXTS, model, tok, batch_size=3, max_tokens=10_000)
    direct = [_direct(model, tok, t) for t in TEXTS]
    assert res.scores == pytest.approx(direct, abs=1e-5)
    assert res.n_scored == 3 and res.n_skipped == 0
    mean, se = mean_stderr(direct)
    assert res.mean == pytest.approx(mean, abs=1e-5) and res.stderr == pytest.approx(se, abs=1e-5)
    assert len(set(tok(t).input_ids.__len__() for t in TEXTS)) > 1  # padding really happened


def test_long_texts_skipped_and_counted(rm):
    model, tok = rm
    lengths = [len(tok(t).input_ids) for t in TEXTS]
    limit = sorted(lengths)[1]  # texts with >= limit tokens are skipped
    res = score_texts(TEXTS, model, tok, batch_size=2, max_tokens=limit)
    kept = [i for i, n in enumerate(lengths) if n < limit]
    assert res.n_skipped == 3 - len(kept) and res.n_scored == len(kept)
    assert [i for i, s in enumerate(res.scores) if s is not None] == kept
    assert res.mean == pytest.approx(_direct(model, tok, TEXTS[kept[0]]), abs=1e-5)


def test_reward_text_cut_at_human():
    rec = EvalRecord(prompt="\n\nHuman: Hi\n\nAssistant:", continuation=" Hello!\n\nhuman: more")
    assert reward_texts([rec]) == ["\n\nHuman: Hi\n\nAssistant: Hello!\n\n"]
    assert reward_texts([rec], cut_human=False) == [rec.prompt + rec.continuation]


def test_the_score_cache_reads_each_sequence_once_and_knows_its_model(rm, tiny_kit, tmp_path):
    import os
    import shutil

    from argsfw.eval.score_cache import ScoreCache

    model, tok = rm
    cache = ScoreCache.for_model(tmp_path, model, "float32")
    first = score_texts(TEXTS[:2], model, tok, batch_size=2, max_tokens=10_000, cache=cache)
    assert first.n_cached == 0

    calls = []
    hook = model.register_forward_hook(lambda m, args, out: calls.append(args))
    try:  # a new cache object reads the file: the two scored texts are not read again
        again = ScoreCache.for_model(tmp_path, model, "float32")
        res = score_texts(TEXTS, model, tok, batch_size=3, max_tokens=10_000, cache=again)
    finally:
        hook.remove()
    assert res.n_cached == 2 and len(calls) == 1  # one forward, for the third text only
    assert res.scores == pytest.approx([_direct(model, tok, t) for t in TEXTS], abs=1e-5)
    assert res.scores[:2] == first.scores

    # other weights (a copy of the model rewritten later): another identity, nothing reused
    other_dir = tmp_path / "other"
    shutil.copytree(model.config._name_or_path, other_dir)
    other, _ = load_reward(other_dir, device="cpu")
    assert ScoreCache.for_model(tmp_path, other, "float32").path != again.path
    weights = next(other_dir.glob("*.safetensors"))
    before = ScoreCache.for_model(tmp_path, other, "float32").path
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert ScoreCache.for_model(tmp_path, other, "float32").path != before  # retrained in place
    assert ScoreCache.for_model(tmp_path, model, "bfloat16").path != again.path  # another dtype
    assert ScoreCache.for_model(None, model, "float32") is None  # no run directory: no cache

    # a killed evaluation's torn last line is ignored, the lines before it kept
    with again.path.open("a") as f:
        f.write('{"k": "abc", "s"')
    assert len(ScoreCache(again.path).scores) == 3
