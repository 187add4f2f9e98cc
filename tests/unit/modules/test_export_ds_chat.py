"""Importing a DeepSpeed-Chat OPT reward checkpoint (synthetic, from a tiny OPT RM)."""

from __future__ import annotations

import json

import pytest
import torch

from argsfw.export import convert_ds_chat_state_dict, main


def test_deepspeed_chat_checkpoint_imports_as_opt_sequence_classifier(tiny_opt_kit, tmp_path):
    from transformers import AutoModelForSequenceClassification, OPTForSequenceClassification

    ref = AutoModelForSequenceClassification.from_pretrained(tiny_opt_kit["reward_model"]).eval()
    # DeepSpeed-Chat's RewardModel: rwtranrsformer = OPTModel, v_head = Linear(d, 1, bias=False)
    ds = {
        ("rwtranrsformer." + k[len("model.") :] if k.startswith("model.") else "v_head.weight"): v
        for k, v in ref.state_dict().items()
    }
    ckpt = tmp_path / "ds_chat"
    ckpt.mkdir()
    torch.save(ds, ckpt / "pytorch_model.bin")
    cfg = json.loads((tiny_opt_kit["reward_model"] / "config.json").read_text())
    cfg.pop("num_labels", None), cfg.pop("id2label", None), cfg.pop("label2id", None)
    cfg["architectures"] = ["OPTModel"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "hf"
    assert (
        main(
            [
                str(ckpt),
                str(out),
                "--from-deepspeed-chat",
                "--tokenizer",
                str(tiny_opt_kit["reward_model"]),
            ]
        )
        == 0
    )
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert isinstance(model, OPTForSequenceClassification) and model.config.num_labels == 1
    ids = torch.tensor([[2, 10, 11, 12, 13], [2, 20, 21, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits
        )


def test_non_ds_chat_keys_are_refused(tmp_path, capsys):
    from argsfw.errors import UsageError

    with pytest.raises(UsageError, match="v_head.weight"):
        convert_ds_chat_state_dict({"model.decoder.embed_tokens.weight": torch.zeros(2, 2)})
    assert main([str(tmp_path / "missing"), str(tmp_path / "out"), "--from-deepspeed-chat"]) == 2
    assert "no DeepSpeed-Chat weights" in capsys.readouterr().err
