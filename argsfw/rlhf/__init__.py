"""Pure tensor functions shared by the fit stages (no Lightning, no Hydra, no W&B).

`stats`: masked statistics and log-prob gathering; `pairwise`: the reward-model losses;
`lm`: the causal-LM loss of SFT. PPO adds `gae`, `kl`, `ppo`, `rollout`, `values` (per-token
scalar heads) and `optim` (one AdamW over actor and critic parameter groups).
"""
