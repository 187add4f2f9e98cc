"""Frozen models a stage's LightningModule reads but never trains (a reference policy, a reward
model, a teacher), held outside ``nn.Module`` registration."""

from __future__ import annotations

import torch


class FrozenModels:
    """Mixin (before ``L.LightningModule`` in the bases) for modules holding frozen models.

    `hold_frozen` keeps them in a plain tuple: nn.Module registers only Module-valued
    attributes, so they stay out of DDP, DeepSpeed, the optimizer and checkpoints. `_apply`
    moves and casts them with the module, and `train` keeps them in eval mode (no dropout).
    """

    _frozen_models: tuple[torch.nn.Module | None, ...] = ()

    def hold_frozen(self, *models: torch.nn.Module | None) -> None:
        """Freeze `models` (None entries allowed) and hold them; `frozen(i)` reads them back."""
        for m in models:
            if m is not None:
                m.requires_grad_(False).eval()
        self._frozen_models = tuple(models)

    def frozen(self, i: int) -> torch.nn.Module | None:
        """The i-th model given to `hold_frozen` (None where None was given)."""
        return self._frozen_models[i]

    @property
    def frozen_models(self) -> list[torch.nn.Module]:
        return [m for m in self._frozen_models if m is not None]

    def _apply(self, fn, *args, **kwargs):
        """Apply `fn` (device move, dtype cast) to the frozen models too.

        Why this private torch hook: ``.to()``, ``.cuda()``, ``.bfloat16()`` — called by Lightning
        and DeepSpeed's engine — all go through it, and the frozen models must follow.
        """
        for m in self.frozen_models:
            m._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        """Train the module; the frozen models stay in eval mode."""
        super().train(mode)
        for m in self.frozen_models:
            m.eval()
        return self
