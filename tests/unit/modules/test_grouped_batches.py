"""data.group_by_length: every example once per epoch, batches of similar lengths, deterministic
per (seed, epoch), and a resumed epoch continues with the same batches."""

from __future__ import annotations

import random

from argsfw.modules._resume import SkippingSampler


def _sampler(lengths, seed=3):
    return SkippingSampler(list(range(len(lengths))), True, seed, lengths=lengths, batch_size=8)


def test_grouped_batches_are_a_permutation_of_similar_lengths():
    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(1000)]
    s = _sampler(lengths)
    s.set_epoch(1)
    order = list(s)
    assert sorted(order) == list(range(1000))
    batches = [order[i : i + 8] for i in range(0, 1000, 8)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    plain = SkippingSampler(list(range(1000)), True, 3)
    plain.set_epoch(1)
    p = list(plain)
    plain_spread = sum(
        max(lengths[i] for i in p[k : k + 8]) - min(lengths[i] for i in p[k : k + 8])
        for k in range(0, 1000, 8)
    )
    assert spread < plain_spread / 5  # padding within a batch shrinks several-fold
    again = _sampler(lengths)
    again.set_epoch(1)
    assert list(again) == order  # a function of (seed, epoch)
    other = _sampler(lengths)
    other.set_epoch(2)
    assert list(other) != order


def test_a_resumed_epoch_continues_with_the_same_batches():
    lengths = [random.Random(1).randint(5, 50) for _ in range(200)]
    full = _sampler(lengths)
    full.set_epoch(4)
    order = list(full)
    resumed = _sampler(lengths)
    resumed.set_epoch(4)
    resumed.skip(4, 24)  # three batches of 8 consumed before the checkpoint
    assert list(resumed) == order[24:]
