"""Every decode group file composes into a valid `DecodeConfig` whose method the engine knows."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from argsfw.config.compose import CONF_DIR, compose, group_options
from argsfw.decoding.registry import methods


@pytest.mark.parametrize("name", group_options("decode"))
def test_decode_group_composes(name):
    job = compose(["recipe=tiny_args", f"decode={name}"])
    written = OmegaConf.load(CONF_DIR / "decode" / f"{name}.yaml")
    assert job.decode.method == written.method and job.decode.method in methods()
    for key, value in written.items():
        assert getattr(job.decode, key) == value, key


def test_genarm_group_samples_pi_decode_exactly():
    """temperature 1 / (1 + alpha) undoes GenARM's division: it samples pi_base * pi_r^alpha,
    for the group's alpha and for any other one (the group leaves the temperature to the rule)."""
    from argsfw.decoding.config import sampling_temperature

    d = compose(["recipe=tiny_genarm"]).decode
    assert d.method == "genarm" and sampling_temperature(d) == pytest.approx(1 / (1 + d.alpha))
    d = compose(["recipe=tiny_genarm", "decode.alpha=2"]).decode
    assert sampling_temperature(d) == pytest.approx(1 / 3)
