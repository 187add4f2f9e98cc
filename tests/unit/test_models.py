import pytest
import torch

from argsfw.models import (
    ModelPathError,
    TinySpec,
    build_tiny_policy,
    check_tokenizer_compat,
    load_policy,
    load_reward_model,
    load_tokenizer,
    resolve_model_path,
    train_tokenizer,
)


def test_tiny_kit_reloads_with_vanilla_transformers(tiny_kit):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_kit["policy"])
    ids = tok(["Human: hello"], return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id
    lm = AutoModelForCausalLM.from_pretrained(tiny_kit["policy"])
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_kit["reward_model"])
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == tok.pad_token_id
    ours = load_policy(tiny_kit["policy"])
    torch.testing.assert_close(lm(ids).logits, ours(ids).logits)
    assert rm(ids).logits.shape == (1, 1)


def test_tiny_models_are_deterministic_from_seed(tiny_texts):
    tok = train_tokenizer(tiny_texts, vocab_size=400)
    a, b, c = (build_tiny_policy(tok, TinySpec(arch="opt"), seed=s) for s in (3, 3, 4))
    x = torch.tensor([[1, 5, 9, 12]])
    torch.testing.assert_close(a(x).logits, b(x).logits)
    assert not torch.allclose(a(x).logits, c(x).logits)


def test_tokenizer_round_trips_text(tiny_texts):
    tok = train_tokenizer(tiny_texts, vocab_size=400)
    text = "Human: ¿Qué tal? 日本 emoji 🙂 tabs\tand\nnewlines"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_tokenizer_compat_reports_differences(tiny_kit, tiny_texts):
    same = load_tokenizer(tiny_kit["policy"])
    assert check_tokenizer_compat(same, load_tokenizer(tiny_kit["reward_model"])).same
    other = train_tokenizer(tiny_texts[:3], vocab_size=300)
    report = check_tokenizer_compat(same, other)
    assert not report.same and "vocabulary size" in str(report)


def test_run_dir_resolves_to_its_hf_export(tiny_kit, tmp_path):
    run = tmp_path / "run"
    (run / "hf").mkdir(parents=True)
    for f in tiny_kit["reward_model"].iterdir():
        (run / "hf" / f.name).write_bytes(f.read_bytes())
    assert resolve_model_path(run) == str(run / "hf")
    assert load_reward_model(run).config.num_labels == 1


@pytest.mark.parametrize("bad", ["./no/such/dir", "runs/missing_run", "no_such_org/no_such_model"])
def test_missing_paths_are_named(bad):
    with pytest.raises(ModelPathError, match="does not exist|neither a local directory"):
        resolve_model_path(bad, "policy")


def test_dir_without_config_is_explained(tmp_path):
    with pytest.raises(ModelPathError, match="holds no config.json"):
        resolve_model_path(tmp_path)


def test_reward_model_without_pad_token_gets_one(tiny_kit, tmp_path):
    from transformers import AutoModelForSequenceClassification

    rm = AutoModelForSequenceClassification.from_pretrained(tiny_kit["reward_model"])
    rm.config.pad_token_id = None
    rm.save_pretrained(tmp_path)
    load_tokenizer(tiny_kit["reward_model"]).save_pretrained(tmp_path)
    assert load_reward_model(tmp_path).config.pad_token_id is not None
