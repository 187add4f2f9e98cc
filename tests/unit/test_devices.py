"""``trainer.devices``: every form the schema accepts works in predict and fit (argsfw.devices)."""

from __future__ import annotations

import pytest

from argsfw import devices as devices_mod
from argsfw.cli import run_entry
from argsfw.config.compose import compose
from argsfw.config.run_dir import RunDir
from argsfw.devices import parse_devices, resolve_devices, trainer_devices
from argsfw.errors import ConfigError
from argsfw.strategies import world_size

# override as typed on the command line -> (canonical form, devices for Lightning on CPU, count)
FORMS = [
    ("1", 1, 1, 1),
    ('"1"', 1, 1, 1),
    ("[0]", [0], 1, 1),
    ('"0,"', [0], 1, 1),
    ("auto", "auto", 1, 1),
    ("-1", -1, 1, 1),
    ('"-1"', -1, 1, 1),
    ("2", 2, 2, 2),
    ('"2"', 2, 2, 2),
    ("[0,1]", [0, 1], 2, 2),
    ("'0,1'", [0, 1], 2, 2),
    ("' 0, 1 '", [0, 1], 2, 2),
]


@pytest.mark.parametrize(("override", "canonical", "cpu_devices", "count"), FORMS)
def test_every_accepted_form_composes_and_resolves_on_cpu(override, canonical, cpu_devices, count):
    job = compose(["recipe=tiny_args", "trainer.accelerator=cpu", f"trainer.devices={override}"])
    assert parse_devices(job.trainer.devices) == canonical
    assert trainer_devices(job.trainer) == (cpu_devices, count)
    assert world_size(job.trainer) == count


@pytest.mark.parametrize("override", ["1", '"1"', "[0]", '"0,"', "auto", "-1", '"-1"'])
def test_a_one_device_cpu_predict_builds_its_trainer(override, tmp_path):
    """predict's own Trainer (no DDP) for every one-device form; `int("0,1")` failed here before."""
    from argsfw.predict import _trainer

    job = compose(
        [
            "recipe=tiny_args",
            "trainer.accelerator=cpu",
            f"trainer.devices={override}",
            "trainer.enable_progress_bar=false",
        ]
    )
    trainer = _trainer(job, RunDir(tmp_path), callbacks=[], logger=None)
    assert trainer.num_devices == 1 and trainer.world_size == 1


def test_fit_trainer_kwargs_hand_lightning_a_cpu_count():
    from argsfw.trainer import trainer_kwargs

    job = compose(
        [
            "recipe=tiny_sft",
            "trainer.accelerator=cpu",
            "trainer.devices='0,1'",
            "optim.batch_size=16",
            "optim.micro_batch_size=8",
        ]
    )
    kwargs = trainer_kwargs(job, manual_optimization=False)
    assert kwargs["devices"] == 2 and kwargs["accumulate_grad_batches"] == 1


@pytest.mark.parametrize(
    ("value", "devices", "count"),
    [
        ("0,1", [0, 1], 2),
        ("3,", [3], 1),
        ("3", 3, 3),
        (-1, -1, 4),
        ("auto", "auto", 4),
        ([2, 0], [2, 0], 2),
    ],
)
def test_on_gpus_the_canonical_form_goes_to_lightning(monkeypatch, value, devices, count):
    monkeypatch.setattr(devices_mod, "_cuda_count", lambda: 4)
    assert resolve_devices(value, "gpu") == (devices, count)
    assert resolve_devices(value, "auto") == (devices, count)


@pytest.mark.parametrize(
    "override",
    ["0", '"0"', "-2", "[]", "[0,0]", "[-1]", "'-1,2'", "'1,x'", "','", "two", "1.5", "true"],
)
def test_a_bad_form_is_one_config_error_line_naming_the_key(override, capsys):
    with pytest.raises(ConfigError, match=r"^trainer\.devices=.* it must be an integer >= 1"):
        compose(["recipe=tiny_args", f"trainer.devices={override}"])
    code = run_entry(
        "predict", lambda job, run: None, ["recipe=tiny_args", f"trainer.devices={override}"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("argsfw predict: error: trainer.devices=")


def test_a_bad_value_given_in_code_is_refused_too():
    for value in (None, 2.0, [0, "1"], [[0]], {"a": 1}, True):
        with pytest.raises(ConfigError, match=r"^trainer\.devices="):
            parse_devices(value)
    assert parse_devices((1, 0)) == [1, 0] and parse_devices(" auto ") == "auto"


def test_a_fit_logging_to_a_file_gets_a_bar_that_writes_every_update():
    import io

    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar

    from argsfw.trainer import progress_bars

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress_bars(True, Terminal()) == []  # a terminal: Lightning's own bar
    assert progress_bars(False, io.StringIO()) == []  # trainer.enable_progress_bar=false
    bars = progress_bars(True, io.StringIO())
    trainer = L.Trainer(accelerator="cpu", callbacks=bars, logger=False)
    assert type(trainer.progress_bar_callback) is TQDMProgressBar  # not Rich's, which waits
