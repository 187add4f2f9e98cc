"""``python _ppo_rank_params.py FIT_ARGS…``: `argsfw.fit` that records each rank's trained weights.

A test helper run as a subprocess (Lightning relaunches this same script for rank 1). At the end
of training every rank writes, into ``$PARAMS_DIR``:

- ``rank{N}.pt``: its actor and critic parameters, flattened into one float32 vector;
- ``rank{N}.json``: ``global_step`` and ``ddp_syncs``, the backward passes that DDP synchronised
  (counted where Lightning arms DDP's reducer for a manual backward: once per optimizer step is
  right, zero means the ranks trained apart).
"""

from __future__ import annotations

import json
import os
import sys

import lightning.pytorch.strategies.ddp as lightning_ddp
import torch

from argsfw.fit import main
from argsfw.modules.ppo import PPOModule

OUT = os.environ["PARAMS_DIR"]
_prepare = lightning_ddp.prepare_for_backward
_syncs = 0


def _counting_prepare(model, output) -> None:
    global _syncs
    _syncs += bool(model.require_backward_grad_sync)
    _prepare(model, output)


def _record(self: PPOModule) -> None:
    params = (*self.actor.parameters(), *self.critic.parameters())
    flat = torch.cat([p.detach().float().reshape(-1) for p in params])
    torch.save(flat, os.path.join(OUT, f"rank{self.global_rank}.pt"))
    stats = {"global_step": self.trainer.global_step, "ddp_syncs": _syncs}
    with open(os.path.join(OUT, f"rank{self.global_rank}.json"), "w") as f:
        json.dump(stats, f)


lightning_ddp.prepare_for_backward = _counting_prepare
PPOModule.on_train_end = _record

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
