"""Validation accuracy beside the length baseline, for every stage that ranks pairs (rm, dpo).

Each validation step adds the model's verdict on each whole pair (right when the chosen reply's
reward is strictly higher) and the length-by-domain rule's (`argsfw.rlhf.length_rule`, carried in
the batch as ``length_rule``); the epoch end logs, over every pair of every rank:

* ``val/reward_acc_se``: the standard error of ``val/reward_acc``;
* ``val/length_rule_acc``: the rule's accuracy on the same pairs;
* ``val/acc_minus_length_rule`` and ``val/vs_length_rule_z``: the paired difference and its z.
"""

from __future__ import annotations

import torch

from argsfw.rlhf.length_rule import paired_comparison


class PairVerdicts:
    """Per-pair verdicts of one validation epoch (model and rule), logged and reset at its end."""

    def __init__(self) -> None:
        self.model: list[torch.Tensor] = []
        self.rule: list[torch.Tensor] = []

    def add(self, chosen: torch.Tensor, rejected: torch.Tensor, rule: torch.Tensor) -> None:
        """Record [N] rewards of N whole pairs and the rule's [N] verdicts on them."""
        self.model.append((chosen > rejected).float().detach().cpu())
        self.rule.append(rule.float().detach().cpu())

    def log(self, module) -> dict | None:
        """Log the comparison on `module` (a LightningModule) and reset; returns it (None when
        no pair was seen, e.g. in the sanity check of an empty loader)."""
        if not self.model:
            return None
        model, rule = torch.cat(self.model), torch.cat(self.rule)
        self.model, self.rule = [], []
        if module.trainer is not None and module.trainer.world_size > 1:
            # ranks hold different numbers of pairs: gather padded, then drop the padding
            n = torch.tensor([model.numel()])
            sizes = module.all_gather(n).flatten().tolist()
            width = max(sizes)
            pad = lambda t: torch.cat([t, t.new_full((width - t.numel(),), -1.0)])  # noqa: E731
            both = module.all_gather(torch.stack([pad(model), pad(rule)]))  # [W, 2, width]
            model = torch.cat([both[w, 0, : sizes[w]] for w in range(len(sizes))])
            rule = torch.cat([both[w, 1, : sizes[w]] for w in range(len(sizes))])
        report = paired_comparison(model.tolist(), rule.tolist())
        for key, name in (
            ("acc_se", "reward_acc_se"),
            ("rule_acc", "length_rule_acc"),
            ("diff", "acc_minus_length_rule"),
            ("z", "vs_length_rule_z"),
        ):
            module.log(f"val/{name}", float(report[key]), rank_zero_only=True)
        return report
