"""SFT and reward stages in one process: gradient accumulation, tokenizer, bad input."""

from __future__ import annotations

import pytest
import torch

from argsfw.config.run_dir import RunDir


class _GradCapture:
    """Records the accumulated gradients just before the first optimizer step."""

    def __new__(cls):
        from lightning.pytorch.callbacks import Callback

        class Capture(Callback):
            grads: dict[str, torch.Tensor] = {}

            def on_before_optimizer_step(self, trainer, pl_module, optimizer):
                if not self.grads:
                    self.grads = {
                        n: p.grad.detach().clone()
                        for n, p in pl_module.named_parameters()
                        if p.grad is not None
                    }

        return Capture()


def _first_step_grads(job, tmp_path):
    import lightning as L

    from argsfw.modules import build_stage
    from argsfw.trainer import _resumable_train_data, trainer_kwargs

    L.seed_everything(0, verbose=False)
    parts = build_stage(job, RunDir(tmp_path))
    capture = _GradCapture()
    kwargs = trainer_kwargs(job, manual_optimization=False)
    kwargs.update(max_steps=1, limit_val_batches=0, gradient_clip_val=None)
    trainer = L.Trainer(
        **kwargs,
        logger=False,
        callbacks=[capture],
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    _resumable_train_data(parts.datamodule, job.seed, trainer)
    trainer.fit(parts.module, datamodule=parts.datamodule)
    assert kwargs["accumulate_grad_batches"] == job.optim.batch_size // job.optim.micro_batch_size
    return capture.grads


@pytest.mark.parametrize("recipe", ["tiny_sft", "tiny_rm"])
def test_batch1_x_accumulation8_equals_batch8(recipe, tiny_job, tmp_path):
    common = ["data.limit=64", "optim.batch_size=8", "rm.prefix_cuts=1"]
    big = _first_step_grads(tiny_job(recipe, *common, "optim.micro_batch_size=8"), tmp_path / "a")
    small = _first_step_grads(tiny_job(recipe, *common, "optim.micro_batch_size=1"), tmp_path / "b")
    assert big.keys() == small.keys() and big
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6, msg=name)


def test_tiny_tokenizer_is_deterministic_and_shared(tiny_job):
    from argsfw.modules._models import build_causal_lm, build_reward_model, tiny_tokenizer

    a = tiny_tokenizer(2048)
    tiny_tokenizer.cache_clear()
    b = tiny_tokenizer(2048)
    assert a is not b and a.get_vocab() == b.get_vocab()
    _, sft_tok, _ = build_causal_lm(tiny_job("tiny_sft"))
    rm_model, rm_tok, _ = build_reward_model(tiny_job("tiny_rm"))
    assert sft_tok.get_vocab() == rm_tok.get_vocab()
    assert rm_model.config.num_labels == 1 and rm_model.config.pad_token_id == rm_tok.pad_token_id


def test_lora_sft_merges_on_export(tiny_job, tmp_path):
    from transformers import AutoModelForCausalLM

    from argsfw.modules import build_stage

    job = tiny_job("tiny_sft", "model.lora.enabled=true", "model.lora.r=4", "data.limit=8")
    parts = build_stage(job, RunDir(tmp_path))
    trainable = [n for n, p in parts.module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for n, p in parts.module.named_parameters():  # make the adapters non-zero
        if "lora_B" in n:
            p.data.normal_()
    parts.module.eval()  # LoRA dropout off
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with torch.no_grad():
        expected = parts.module(ids, torch.ones_like(ids))
    parts.export(parts.module, tmp_path / "hf")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert not (tmp_path / "hf" / "adapter_config.json").exists()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected, rtol=1e-4, atol=1e-5)


def _fit_exit(argv, capsys) -> tuple[int, str]:
    from argsfw.fit import main

    code = main(argv)
    return code, capsys.readouterr().err.strip()


SMALL_CLI = ["logger.name=none", "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64"]


def test_missing_policy_path_is_exit_2(tmp_path, capsys):
    code, err = _fit_exit(
        ["recipe=tiny_sft", f"run_dir={tmp_path / 'r'}", f"policy={tmp_path / 'nope'}", *SMALL_CLI],
        capsys,
    )
    assert code == 2 and len(err.splitlines()) == 1 and "nope" in err and "does not exist" in err


def test_init_from_policy_without_policy_names_the_command(tmp_path, capsys):
    code, err = _fit_exit(
        ["recipe=tiny_rm", f"run_dir={tmp_path / 'r'}", "rm.init_from_policy=true", *SMALL_CLI],
        capsys,
    )
    assert code == 2 and "policy=" in err and "recipe=tiny_sft" in err


def test_empty_dataset_is_exit_2(tmp_path, capsys):
    code, err = _fit_exit(
        ["recipe=tiny_rm", f"run_dir={tmp_path / 'r'}", "data.limit=0", *SMALL_CLI], capsys
    )
    assert code == 2 and len(err.splitlines()) == 1 and "empty" in err
    assert not (tmp_path / "r" / "hf").exists()


def test_existing_run_dir_is_refused_with_both_options(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("stage: sft\n")
    code, err = _fit_exit(["recipe=tiny_sft", f"run_dir={run}", *SMALL_CLI], capsys)
    assert code == 2 and "resume=true" in err and "overwrite=true" in err
    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    code, err = _fit_exit(
        ["recipe=tiny_sft", f"run_dir={other}", "overwrite=true", *SMALL_CLI], capsys
    )
    assert code == 2 and (other / "precious.txt").exists()


def test_nan_loss_stops_with_step_and_exports_nothing(tiny_job, tmp_path):
    from argsfw.errors import NonFiniteLossError
    from argsfw.fit import _fit

    job = tiny_job(
        "tiny_sft",
        "data.limit=16",
        "optim.lr=1e30",
        "optim.warmup_steps=0",
        "trainer.max_steps=20",
        "trainer.max_epochs=20",
        "optim.micro_batch_size=8",
        "optim.batch_size=8",
    )
    job.trainer.gradient_clip_val = None
    run = RunDir(tmp_path / "r")
    with pytest.raises(NonFiniteLossError, match=r"global step \d+ .*batch \d+"):
        _fit(job, run)
    assert not run.hf_dir.exists() and not run.metrics_path.exists()
    assert run.meta()["status"] == "failed"
