"""GenARM's sampling rule: the default temperature, the padded head rows, and non-finite settings."""

from __future__ import annotations

import pytest
import torch

from argsfw.decoding import ArgsDecoder, decode_settings
from argsfw.decoding.config import check_decode_settings, sampling_temperature
from argsfw.decoding.sampling import make_generator
from argsfw.decoding.search import StepContext
from argsfw.decoding.token_level import GenARMChooser
from argsfw.decoding.types import DecodeInputError


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_genarm_without_temperature_samples_pi_decode(alpha):
    """No temperature: GenARM's 1/(1+alpha), which undoes its division by 1+alpha (T=1 on
    pi_base * pi_r^alpha); the old fixed 0.7 sampled it at 1.4 for alpha=1."""
    assert sampling_temperature(decode_settings(method="genarm", alpha=alpha)) == 1 / (1 + alpha)
    assert (
        sampling_temperature(decode_settings(method="genarm", alpha=alpha, temperature=0.9)) == 0.9
    )
    for method in ("args-stochastic", "top-k", "nucleus", "best-of-n", "token-rm-stochastic"):
        assert sampling_temperature(decode_settings(method, lenient=True, alpha=alpha)) == 0.7


class _Head:
    """A scorer with a fixed ARM head [B, V] (what `TokenRewardState` holds after a step)."""

    def __init__(self, head: torch.Tensor):
        self.head, self.total = head, torch.zeros(head.shape[0])


def test_padded_head_rows_get_no_probability():
    """Columns past the tokenizer (a head padded to a multiple of 64) are never chosen, and the
    real tokens' distribution is the one over the tokenizer's vocabulary alone."""
    torch.manual_seed(0)
    real, padded, n = 5, 8, 400
    logits = torch.randn(1, padded)
    logits[:, real:] = 8.0  # padded rows a random init made likely
    head = torch.randn(1, padded)
    head[:, real:] = 8.0
    chooser = GenARMChooser(1.0, greedy=False, temperature=0.5, n_tokens=real)
    gen = make_generator(0, "p")
    picks = [int(chooser(logits, _Head(head), StepContext(1, [0], [gen]))[0]) for _ in range(n)]
    assert max(picks) < real
    greedy = GenARMChooser(1.0, greedy=True, n_tokens=real)
    token, total = greedy(logits, _Head(head), StepContext(1, [0], [gen]))
    mixed = logits[0, :real].log_softmax(-1) + head[0, :real].log_softmax(-1)
    assert int(token) == int(mixed.argmax())
    # the ARM reward is log pi_r over the real tokens only
    assert float(total) == pytest.approx(float(head[0, :real].log_softmax(-1)[int(token)]))
    plain = GenARMChooser(0.0, greedy=True, n_tokens=real)
    assert int(plain(logits, None, StepContext(1, [0], [gen]))[0]) < real


def test_engine_resolves_genarm_temperature(llama, prompts):
    """The engine samples at 1/(1+alpha) when no temperature is given."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.arm)
    s = decode_settings(method="genarm", alpha=2.0, max_new_tokens=6)
    default, _ = dec.generate(prompts, s)
    explicit, _ = dec.generate(prompts, s, temperature=1 / 3)
    old, _ = dec.generate(prompts, s, temperature=0.7)
    assert [g.new_ids for g in default] == [g.new_ids for g in explicit]
    assert [g.new_ids for g in default] != [g.new_ids for g in old]


@pytest.mark.parametrize(
    "kw", [dict(temperature=float("inf")), dict(top_p=float("nan")), dict(weight="1.5")]
)
def test_non_finite_or_non_numeric_settings_are_refused(kw):
    with pytest.raises(DecodeInputError, match=next(iter(kw))):
        check_decode_settings(decode_settings(method="args-stochastic", **kw))
