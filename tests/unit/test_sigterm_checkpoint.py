"""A SIGTERM'd fit saves a checkpoint at the batch it stopped at, so the resume loses no step."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from argsfw.trainer import PeriodicCheckpoint


class _Line(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.w(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(64, 2)), batch_size=2
        )


class _SigtermAt(Callback):
    """Send this process a real SIGTERM at the end of batch `batch` (Lightning's handler, which
    fit installs, sets ``trainer.received_sigterm``)."""

    def __init__(self, batch: int):
        self.batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.batch:
            # without Lightning's handler the signal would end the test process itself
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGTERM)
            assert trainer.received_sigterm


@pytest.mark.parametrize("minutes", [0.0, 30.0])  # no time trigger, and one not yet due
def test_a_sigterm_saves_the_step_it_stopped_at(tmp_path, minutes):
    ckpt = PeriodicCheckpoint(minutes=minutes, stage="sft", dirpath=str(tmp_path), save_last=True,
                              save_top_k=1, every_n_train_steps=None, save_on_train_epoch_end=True)  # fmt: skip
    trainer = L.Trainer(
        max_epochs=1, callbacks=[_SigtermAt(batch=4), ckpt], logger=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    with pytest.raises(SIGTERMException):
        trainer.fit(_Line())
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    # batches 0..4 trained, of 32 (not the epoch's end): the state a periodic save at a batch's
    # end records, which a resume continues from
    assert last["global_step"] == 5
    assert last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"] == 5
