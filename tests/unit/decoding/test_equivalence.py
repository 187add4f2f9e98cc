"""The fast engine gives the same tokens as the slow reference path and as `model.generate`."""

from __future__ import annotations

import pytest
import torch

from argsfw.decoding import ArgsDecoder, DecodeConfig, decode_settings, reference_decode
from argsfw.decoding.config import sampling_temperature
from argsfw.decoding.sampling import make_generator


def _reference(m, dec, gen, s: DecodeConfig, to_rm_ids=None, rm=None):
    return reference_decode(
        m.llm,
        rm if rm is not None else m.rm,
        gen.prompt_ids,
        weight=s.weight,
        topk=s.topk,
        max_new_tokens=s.max_new_tokens,
        greedy=s.method != "args-stochastic",
        temperature=sampling_temperature(s),
        generator=make_generator(s.seed, gen.prompt),
        eos_ids=tuple(dec.eos_ids),
        to_rm_ids=to_rm_ids,
    )


@pytest.mark.parametrize(
    "method,chunk", [("args-greedy", None), ("args-greedy-large", 3), ("args-stochastic", None)]
)
def test_fast_equals_reference(models, prompts, method, chunk):
    """Batch 1 and one batch of prompts of different lengths both equal the no-cache reference."""
    dec = ArgsDecoder(models.llm, models.tokenizer, models.rm)
    s = decode_settings(
        method=method,
        weight=1.5,
        topk=5,
        max_new_tokens=8,
        **({"chunk_size": chunk} if chunk else {}),
    )
    batched, _ = dec.generate(prompts, s, batch_size=4)
    single, _ = dec.generate(prompts, s, batch_size=1)
    assert [g.prompt for g in batched] == prompts
    for g, one in zip(batched, single):
        ref, finished = _reference(models, dec, g, s)
        assert g.new_ids == ref == one.new_ids, (method, g.index)
        assert g.finished == finished


def test_weight_zero_equals_model_generate(models, prompts):
    dec = ArgsDecoder(models.llm, models.tokenizer, models.rm)
    gens, stats = dec.generate(
        prompts, decode_settings(method="args-greedy", weight=0.0, topk=4, max_new_tokens=12)
    )
    assert stats.rm_forwards == 0
    for g in gens:
        ids = torch.tensor([g.prompt_ids])
        out = models.llm.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=12,
            pad_token_id=models.tokenizer.pad_token_id,
        )
        assert g.new_ids == out[0, ids.shape[1] :].tolist()


def test_plain_greedy_baseline_equals_weight_zero(llama, prompts):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    a, _ = dec.generate(prompts, decode_settings(method="greedy", max_new_tokens=8))
    b, _ = dec.generate(
        prompts, decode_settings(method="args-greedy", weight=0.0, topk=1, max_new_tokens=8)
    )
    assert [g.new_ids for g in a] == [g.new_ids for g in b]


@pytest.mark.parametrize("method", ["args-stochastic", "top-k", "nucleus", "best-of-n"])
def test_samples_do_not_depend_on_batching(llama, prompts, method):
    """A prompt's sample is a function of (seed, prompt key): batch size and order do not matter."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    s = decode_settings(
        method=method, weight=1.0, topk=6, max_new_tokens=8, temperature=1.0, num_samples=3,
        lenient=True,
    )  # fmt: skip
    together, _ = dec.generate(prompts, s, batch_size=4)
    alone, _ = dec.generate(prompts[::-1], s, batch_size=1)
    assert [g.new_ids for g in together] == [g.new_ids for g in alone[::-1]]
    other_seed, _ = dec.generate(prompts, s, seed=1)
    assert [g.new_ids for g in other_seed] != [g.new_ids for g in together]


def test_eos_stops_each_row_and_is_kept(llama, prompts):
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    s = decode_settings(
        method="args-greedy", weight=1.0, topk=4, max_new_tokens=10, stop_at_eos=False
    )
    free, _ = dec.generate(prompts, s)
    stop = free[0].new_ids[2]  # make row 0's third token the "EOS"
    dec.eos_ids = [stop]
    gens, stats = dec.generate(prompts, s, stop_at_eos=True)
    for f, g in zip(free, gens):
        cut = f.new_ids.index(stop) + 1 if stop in f.new_ids else len(f.new_ids)
        assert g.new_ids == f.new_ids[:cut]
        assert g.finished == (stop in f.new_ids)
    assert gens[0].finished and gens[0].new_ids[-1] == stop
    assert stats.new_tokens == sum(g.n_new_tokens for g in gens)


def test_rm_without_pad_token(llama, prompts):
    import copy

    rm = copy.deepcopy(llama.rm)
    rm.config.pad_token_id = None
    s = decode_settings(method="args-greedy", weight=1.0, topk=4, max_new_tokens=6)
    a, _ = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm).generate(prompts, s)
    b, _ = ArgsDecoder(llama.llm, llama.tokenizer, rm).generate(prompts, s)
    assert [g.new_ids for g in a] == [g.new_ids for g in b]


def test_backbone_plus_head_is_the_classifier_score(models):
    """The engine reads rewards as head(backbone(x))[last]: that is what the HF classifier returns."""
    from argsfw.decoding.scoring import reward_parts

    backbone, head = reward_parts(models.rm)
    ids = torch.tensor([models.tokenizer("Human: hello there").input_ids])
    with torch.no_grad():
        ours = head(backbone(input_ids=ids).last_hidden_state[:, -1])
        torch.testing.assert_close(ours, models.rm(input_ids=ids).logits)


def test_final_reward_is_the_sequence_reward(llama, prompts):
    from argsfw.decoding.accounting import DecodeStats
    from argsfw.decoding.reference_scorer import ReferenceScorer

    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    gens, _ = dec.generate(
        prompts[:2], decode_settings(method="args-greedy", weight=1.0, topk=3, max_new_tokens=5)
    )
    ref = ReferenceScorer(llama.rm, DecodeStats())
    for g in gens:
        assert g.reward == pytest.approx(ref.score_sequence(g.ids), abs=1e-5)


def test_mixed_devices_and_dtypes(llama, prompts):
    """An RM in another dtype works (rewards come back as float32 on the policy's device)."""
    import copy

    rm = copy.deepcopy(llama.rm).to(torch.bfloat16)
    gens, stats = ArgsDecoder(llama.llm, llama.tokenizer, rm).generate(
        prompts, decode_settings(method="args-greedy", weight=1.0, topk=4, max_new_tokens=4)
    )
    assert all(g.n_new_tokens == 4 and isinstance(g.reward, float) for g in gens)
    # the scorer's rewards: float32 on the candidates' (the policy's) device, not the RM's bf16
    from argsfw.decoding.accounting import DecodeStats
    from argsfw.decoding.reference_scorer import ReferenceScorer
    from argsfw.decoding.scoring import SharedTokenizerScorer

    prompt = gens[0].prompt_ids
    policy_device = next(llama.llm.parameters()).device
    scorer = SharedTokenizerScorer(rm, DecodeStats())
    scorer.start(torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long))
    cands = torch.tensor([[5, 6, 7, 8]], device=policy_device)
    rewards = scorer.score(cands)
    assert rewards.dtype == torch.float32 and rewards.device == policy_device
    assert rewards.shape == (1, 4)
    # and they are the bf16 RM's rewards (bf16 keeps ~3 significant digits)
    ref = ReferenceScorer(rm, DecodeStats())
    expected = torch.tensor([[ref.score_sequence([*prompt, c]) for c in (5, 6, 7, 8)]])
    torch.testing.assert_close(rewards, expected, rtol=0.02, atol=0.02)
