"""The cache primitives whole-sequence methods share: a sequence RM's reader and the policy state
extended, repeated and cut like a batch of samples, against each model's own full forward."""

from __future__ import annotations

import torch

from argsfw.decoding.accounting import DecodeStats, PrefixLedger, RowCursors
from argsfw.decoding.policy import PolicyState, left_pad
from argsfw.decoding.prefix_cache import RewardReader


def _hf_reward(rm, ids: list[int]) -> float:
    """The RM's own forward over one whole sequence (it reads the rightmost non-pad token)."""
    return float(rm(input_ids=torch.tensor([ids])).logits[0, 0])


@torch.inference_mode()
def test_reader_rewards_are_the_rms_own(llama, prompts):
    rm, tok = llama.rm, llama.tokenizer
    pad = rm.config.pad_token_id
    assert pad is not None
    ps = [list(tok(p).input_ids) for p in prompts[:2]]
    ledger = PrefixLedger()
    reader = RewardReader(rm, DecodeStats(), 2, RowCursors(ledger, [0, 1]))
    got = reader.extend(ps)
    seqs = [list(p) for p in ps]
    assert torch.allclose(got, torch.tensor([_hf_reward(rm, s) for s in seqs]), atol=1e-4)
    reader.repeat(3)  # 3 samples per prompt share its cache
    seqs = [list(s) for s in seqs for _ in range(3)]
    rounds = [
        [[5, 6], [7], [], [8, 9, 10], [pad], [11, pad]],  # empty, pad only, pad last
        [[12], [pad, 13], [14, 15], [16], [17], []],  # pad inside
    ]
    for new in rounds:
        got = reader.extend(new)
        for s, t in zip(seqs, new):
            s.extend(t)
        want = torch.tensor([_hf_reward(rm, s) for s in seqs])
        assert torch.allclose(got, want, atol=1e-4), (got, want)
    reader.keep([5, 0, 3])  # drop rows, keep an order
    seqs = [seqs[5], seqs[0], seqs[3]]
    got = reader.extend([[18, 19], [20], [pad]])
    for s, t in zip(seqs, [[18, 19], [20], [pad]]):
        s.extend(t)
    assert torch.allclose(got, torch.tensor([_hf_reward(rm, s) for s in seqs]), atol=1e-4)
    # each prompt read once, every later token once: no re-reads
    t0, t1 = ledger.tallies[0], ledger.tallies[1]
    assert t0.rereads == t1.rereads == 0
    fresh = RewardReader(rm, DecodeStats(), 2)  # a row without tokens stays out of the forward
    got = fresh.extend([[], ps[1]])
    assert torch.isnan(got[0]) and abs(float(got[1]) - _hf_reward(rm, ps[1])) < 1e-4
    got = fresh.extend([ps[0], [5]])
    want = [_hf_reward(rm, ps[0]), _hf_reward(rm, ps[1] + [5])]
    assert torch.allclose(got, torch.tensor(want), atol=1e-4)
    assert t0.positions == len(ps[0]) + (2 + 1 + 0) + (1 + 2 + 2) + 1  # rows 0-2, then row 0
    assert t1.positions == len(ps[1]) + (3 + 1 + 2) + (1 + 1 + 0) + (2 + 1)  # rows 3-5, then 5, 3


@torch.inference_mode()
def test_policy_state_extend_repeat_keep_match_full_forwards(llama, prompts):
    llm, tok = llama.llm, llama.tokenizer
    ps = [list(tok(p).input_ids) for p in prompts[:2]]
    ids, mask = left_pad(ps, tok.pad_token_id, "cpu")
    ledger = PrefixLedger()
    state = PolicyState(llm, ids, mask, DecodeStats(), reads=RowCursors(ledger, [0, 1]))
    state.prefill()
    state.repeat(2)
    seqs = [list(p) for p in ps for _ in range(2)]
    new = [[5, 6, 7], [8], [9, 10], [11]]
    logits = state.extend(new)
    for s, t in zip(seqs, new):
        s.extend(t)
    state.keep(torch.tensor([3, 0]))
    seqs = [seqs[3], seqs[0]]
    logits = state.step(torch.tensor([12, 13]))
    for s, t in zip(seqs, [12, 13]):
        s.append(t)
    for row, s in enumerate(seqs):
        want = llm(input_ids=torch.tensor([s])).logits[0, -1]
        assert torch.allclose(logits[row], want, atol=1e-4)
    assert ledger.tallies[0].positions == len(ps[0]) + 3 + 1 + 1  # prompt once, both samples
    assert ledger.tallies[1].positions == len(ps[1]) + 2 + 1 + 1
    assert ledger.tallies[0].rereads == ledger.tallies[1].rereads == 0


@torch.inference_mode()
def test_repeat_then_keep_holds_the_batch_size(llama, prompts):
    """Blockwise decoding expands to K rows and keeps one per prompt, block after block: every
    per-row tensor of the state stays at the batch size (it must not grow K-fold per block)."""
    tok = llama.tokenizer
    ps = [list(tok(p).input_ids) for p in prompts[:2]]
    ids, mask = left_pad(ps, tok.pad_token_id, "cpu")
    state = PolicyState(llama.llm, ids, mask, DecodeStats())
    state.prefill()
    for block in range(6):
        state.repeat(4)
        state.step(torch.tensor([5 + block] * 8))
        state.keep(torch.tensor([1, 6]))
        assert state.ids.shape[0] == state.mask.shape[0] == state.next_pos.shape[0] == 2
        assert len(state.reads.nodes) == 2
