"""argsfw's reward-model and DPO losses against TRL's reference trainers (trl, test-only), on the
same weights and the same real HH-RLHF pairs.

Each test builds the argsfw stage exactly as a fit does (`build_stage` on a composed recipe), takes
a batch of real pairs, and runs TRL's own collator and ``compute_loss`` on the same examples:

* **RewardTrainer** — per-pair rewards, the loss and every gradient equal argsfw's. One
  convention differs and is aligned here: TRL appends the EOS *text* to every sequence before
  tokenizing; argsfw's RM reads sequences without EOS, because ARGS scores partial replies that
  end in an ordinary token. The test hands TRL argsfw's token ids (no EOS), and a separate test
  shows that TRL's own tokenization is argsfw's plus exactly that EOS.
* **DPOTrainer** — per-pair policy and reference log-likelihoods (reply tokens and the EOS), the
  loss and every gradient. Nothing is aligned: argsfw's DPO counts the completion's EOS as TRL and
  the DPO authors' code do; TRL's tokenization of the texts gives argsfw's ids.
"""

from __future__ import annotations

import copy

import torch

PAIRS = 6


def _data(shared_data) -> list[str]:
    path = shared_data / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    return [
        "data=hh_rlhf",
        f"data.path={path}",
        "data.split=test",
        "data.eval_split=test",
        f"data.limit={PAIRS}",
        "data.max_length=96",
        "data.max_prompt_length=64",
    ]


def _parts(tiny_job, tmp_path, recipe, *overrides):
    from argsfw.config.run_dir import RunDir
    from argsfw.modules import build_stage

    torch.manual_seed(0)
    parts = build_stage(tiny_job(recipe, *overrides), RunDir(tmp_path / "run"))
    parts.datamodule.setup("fit")
    items = parts.datamodule.datasets["test"].items
    assert len(items) == PAIRS
    return parts, items


def _args(cls, tmp_path, **kw):
    return cls(
        output_dir=str(tmp_path / "trl"),
        report_to=[],
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        per_device_train_batch_size=PAIRS,
        **kw,
    )


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(ours: dict, theirs: dict, tol: float) -> None:
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for name, g in ours.items():
        torch.testing.assert_close(g, theirs[name], atol=tol, rtol=tol, msg=name)


def test_reward_model_equals_trl_reward_trainer(tiny_job, tmp_path, shared_data):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    parts, items = _parts(tiny_job, tmp_path, "tiny_rm", *_data(shared_data), "rm.prefix_cuts=0")
    module, tok = parts.module, parts.datamodule.tokenizer
    module.log = lambda *a, **k: None  # no Trainer attached; logging is not under test
    reference = copy.deepcopy(module.model)

    batch = parts.datamodule.collate_fn(items)
    module.model.train()
    loss = module.training_step(batch, 0)
    loss.backward()
    with torch.no_grad():
        ours_c, ours_r = module.rewards(batch)

    # aligned convention: TRL gets argsfw's ids, which carry no EOS (see the module docstring)
    examples = [{"chosen_ids": it["chosen"], "rejected_ids": it["rejected"]} for it in items]
    trainer = RewardTrainer(
        model=reference,
        args=_args(RewardConfig, tmp_path),
        train_dataset=Dataset.from_list(examples),
        processing_class=tok,
    )
    inputs = trainer.data_collator(examples)
    reference.train()
    theirs, outputs = trainer.compute_loss(reference, inputs, return_outputs=True)
    theirs.backward()
    their_c, their_r = outputs.logits.squeeze(-1).detach().chunk(2)

    torch.testing.assert_close(ours_c, their_c, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours_r, their_r, atol=1e-6, rtol=1e-6)
    assert (ours_c - ours_r).abs().max() > 1e-4  # the pairs are not all ties: a real check
    torch.testing.assert_close(loss.detach(), theirs.detach(), atol=1e-6, rtol=1e-6)
    _assert_same_grads(_grads(module.model), _grads(reference), 1e-6)


def test_trl_reward_tokenization_is_ours_plus_its_eos(tiny_job, tmp_path, shared_data):
    """TRL's own text pipeline (prompt + reply + EOS text, tokenized together) gives argsfw's ids
    plus one EOS token, wherever the tokenizer does not merge across the prompt/reply boundary."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from argsfw.data import load_pairs

    parts, items = _parts(
        tiny_job, tmp_path, "tiny_rm", *_data(shared_data), "data.max_length=4096",
        "data.max_prompt_length=4096",
    )  # fmt: skip
    tok = parts.datamodule.tokenizer
    pairs = load_pairs(parts.datamodule.cfg, "test", tok)
    texts = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    trainer = RewardTrainer(
        model=copy.deepcopy(parts.module.model),
        args=_args(RewardConfig, tmp_path),
        train_dataset=Dataset.from_list(texts),
        processing_class=tok,
    )
    prepared = trainer.train_dataset
    same = 0
    for it, row in zip(items, prepared):
        for side in ("chosen", "rejected"):
            assert row[f"{side}_ids"][-1] == tok.eos_token_id
            same += row[f"{side}_ids"][:-1] == it[side]
    assert same >= 2 * PAIRS - 2, f"only {same} of {2 * PAIRS} sequences tokenize alike"


def test_dpo_equals_trl_dpo_trainer(tiny_job, tmp_path, shared_data):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from argsfw.data import load_pairs
    from argsfw.modules._lm_rewards import both_sides

    beta = 0.3
    parts, items = _parts(
        tiny_job, tmp_path, "tiny_dpo", *_data(shared_data), "policy=null", f"dpo.beta={beta}",
        "data.max_length=4096", "data.max_prompt_length=4096",
    )  # fmt: skip
    module, tok = parts.module, parts.datamodule.tokenizer
    module.log = lambda *a, **k: None
    with torch.no_grad():  # a policy that differs from its reference: log-ratios are not 0
        for p in module.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    policy, ref = copy.deepcopy(module.model), copy.deepcopy(module.reference)

    batch = parts.datamodule.collate_fn(items)
    module.model.train()
    loss, r_w, r_l, _ = module.terms(batch)
    loss.backward()
    ids, mask = both_sides(batch, "input_ids"), both_sides(batch, "attention_mask")
    with torch.no_grad():
        ours_logps = module._logps(module.model, ids, mask, both_sides(batch, "response_mask"))

    pairs = load_pairs(parts.datamodule.cfg, "test", tok)
    texts = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    trainer = DPOTrainer(
        model=policy,
        ref_model=ref,
        args=_args(DPOConfig, tmp_path, beta=beta, max_length=None, precompute_ref_log_probs=False),
        train_dataset=Dataset.from_list(texts),
        processing_class=tok,
    )
    # TRL's tokenization of the texts (EOS text appended, prompt tokenized alone) is argsfw's
    for it, row in zip(items, trainer.train_dataset):
        p = it["prompt_len"]
        assert row["prompt_ids"] == it["chosen"][:p]
        assert row["chosen_ids"] == it["chosen"][p:] and row["chosen_ids"][-1] == tok.eos_token_id
        assert row["rejected_ids"] == it["rejected"][p:]
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(PAIRS)])
    policy.train()
    theirs = trainer.compute_loss(policy, inputs)
    theirs.backward()
    their_logps = torch.cat(trainer.compute_ref_log_probs(policy, inputs))
    their_ref = torch.cat(trainer.compute_ref_log_probs(ref, inputs))

    torch.testing.assert_close(ours_logps, their_logps, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(
        torch.cat([r_w, r_l]) / beta, ours_logps - their_ref, atol=2e-4, rtol=1e-5
    )
    assert (r_w - r_l).abs().max() > 1e-3  # the policy moved: the loss is not log 2
    torch.testing.assert_close(loss.detach(), theirs.detach(), atol=1e-5, rtol=1e-5)
    _assert_same_grads(_grads(module.model), _grads(policy), 1e-5)
