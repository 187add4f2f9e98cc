"""TRL's dataset formats (``data.source=trl``): preference and prompt-only records, standard
(strings) and conversational (chat message lists), explicit or implicit prompt, from JSONL,
JSON, Parquet files, a folder or a hub id, in the raw HH layout or the chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from argsfw.data import DataConfig, DataError, load_pairs, load_prompts, load_prompts_with_stats

H, A = "\n\nHuman:", "\n\nAssistant:"
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _user(text):
    return {"role": "user", "content": text}


def _bot(text):
    return {"role": "assistant", "content": text}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _parquet(path: Path, rows: list[dict]) -> Path:
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def _cfg(path, **kw) -> DataConfig:
    return DataConfig(source="trl", path=str(path), split="train", eval_split="train", **kw)


@pytest.fixture(scope="module")
def chat_tokenizer():
    from argsfw.models import train_tokenizer

    tok = train_tokenizer(["the sky is blue and grass is green"] * 20, vocab_size=300)
    tok.chat_template = TEMPLATE
    return tok


def ultrafeedback_rows() -> list[dict]:
    """Rows shaped like HuggingFaceH4/ultrafeedback_binarized: a string prompt, chosen and
    rejected as whole conversations (user turn + answer), ids, scores and the messages."""
    rows = []
    for i, (q, good, bad) in enumerate(
        [("What colour is the sky?", "Blue.", "Green."), ("Is 2+2 four?", "Yes.", "No, five.")]
    ):
        rows.append({
            "prompt": q, "prompt_id": f"uf{i}",
            "chosen": [_user(q), _bot(good)], "rejected": [_user(q), _bot(bad)],
            "messages": [_user(q), _bot(good)], "score_chosen": 8.0, "score_rejected": 3.0,
        })  # fmt: skip
    return rows


def test_standard_preference_explicit_and_implicit_prompt(tmp_path):
    rows = [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "id": "a"},
        {"chosen": "The grass is green.", "rejected": "The grass is red."},  # implicit prompt
    ]
    pairs = load_pairs(_cfg(_jsonl(tmp_path / "pairs.jsonl", rows)))
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ("The sky is", " blue.", " green."),
        ("The grass is", " green.", " red."),
    ]
    assert [p.id for p in pairs] == ["a", "trl-train-1"]


def test_conversational_preference_as_raw_text_and_chat_template(tmp_path, chat_tokenizer):
    """Explicit prompt (a JSON array file) with a system turn: raw HH text, or the chat template
    over the very messages given (the system turn kept)."""
    convo = [{"role": "system", "content": "Be brief."}, _user("Sky colour?")]
    rows = [{"prompt": convo, "chosen": [_bot("Blue.")], "rejected": [_bot("Green.")]}]
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    raw = load_pairs(_cfg(path))[0]
    assert (raw.prompt, raw.chosen, raw.rejected) == (
        f"Be brief.{H} Sky colour?{A}",
        " Blue.",
        " Green.",
    )
    chat = load_pairs(_cfg(path, prompt_format="chat"), tokenizer=chat_tokenizer)[0]
    want = chat_tokenizer.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
    assert chat.prompt == want == "<|system|>Be brief.\n<|user|>Sky colour?\n<|assistant|>"
    assert (chat.chosen, chat.rejected) == ("Blue.", "Green.")


def test_ultrafeedback_binarized_shape_from_parquet(tmp_path, chat_tokenizer):
    """A string prompt beside whole conversations: the prompt is the turns chosen and rejected
    share (as TRL reads it); prompt_id is the id; extra columns are ignored."""
    path = _parquet(tmp_path / "train_prefs-00000-of-00001.parquet", ultrafeedback_rows())
    pairs = load_pairs(_cfg(path))
    assert [(p.id, p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ("uf0", f"{H} What colour is the sky?{A}", " Blue.", " Green."),
        ("uf1", f"{H} Is 2+2 four?{A}", " Yes.", " No, five."),
    ]
    chat = load_pairs(_cfg(path, prompt_format="chat"), tokenizer=chat_tokenizer)
    assert chat[0].prompt == "<|user|>What colour is the sky?\n<|assistant|>"
    prompts = load_prompts(_cfg(path, prompt_format="chat"), tokenizer=chat_tokenizer)
    assert [p.prompt for p in prompts] == [c.prompt for c in chat]


def test_prompt_only_in_both_forms_and_a_folder_of_splits(tmp_path, chat_tokenizer):
    folder = tmp_path / "data"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [{"prompt": "Tell me a joke."}])
    _parquet(folder / "test.parquet", [{"prompt": [_user("Name a colour.")], "id": "q1"}])
    cfg = DataConfig(source="trl", path=str(folder), split="train", eval_split="test")
    assert [p.prompt for p in load_prompts(cfg, split="train")] == ["Tell me a joke."]
    (prompt,) = load_prompts(cfg)
    assert (prompt.id, prompt.prompt) == ("q1", f"{H} Name a colour.{A}")
    chat_cfg = DataConfig(
        source="trl", path=str(folder), split="train", eval_split="test", prompt_format="chat"
    )
    assert load_prompts(chat_cfg, tokenizer=chat_tokenizer)[0].prompt == (
        "<|user|>Name a colour.\n<|assistant|>"
    )
    assert load_prompts(chat_cfg, "train", tokenizer=chat_tokenizer)[0].prompt == (
        "<|user|>Tell me a joke.\n<|assistant|>"
    )
    with pytest.raises(DataError, match="missing field 'chosen'"):
        load_pairs(cfg)  # prompt-only data has no pairs to train on


def test_edge_cases_are_counted_and_bad_fields_located(tmp_path):
    rows = [
        {"prompt": [_user("Q")], "chosen": [_bot("Same.")], "rejected": [_bot("Same.")]},
        {"chosen": [_user("Q"), _bot("A")], "rejected": [_user("R"), _bot("A")]},  # no shared turn
        {"prompt": "Q", "chosen": " a", "rejected": " b"},
    ]
    path = _jsonl(tmp_path / "pairs.jsonl", rows)
    assert [p.chosen for p in load_pairs(_cfg(path))] == [" a"]
    prompts, stats = load_prompts_with_stats(_cfg(path))
    assert len(prompts) == 2 and stats.dropped == {"no_assistant_turn": 1}
    bad = _jsonl(
        tmp_path / "bad.jsonl", [rows[2], {"prompt": "Q", "chosen": {"x": 1}, "rejected": " b"}]
    )
    with pytest.raises(
        DataError, match=r"bad.jsonl: line 2: field 'chosen' is dict, expected a string"
    ):
        load_pairs(_cfg(bad))


def test_hub_id_goes_through_datasets(monkeypatch):
    """A hub id is read with datasets.load_dataset(id, split=...) (stubbed: no network)."""
    import datasets

    calls = []

    def fake_load_dataset(path, split=None, **kw):
        calls.append((path, split))
        return datasets.Dataset.from_list(ultrafeedback_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = DataConfig(
        source="trl", path="HuggingFaceH4/ultrafeedback_binarized", split="train_prefs"
    )
    assert [p.chosen for p in load_pairs(cfg)] == [" Blue.", " Yes."]
    assert calls == [("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")]


def test_the_ultrafeedback_data_group_composes():
    from argsfw.config.compose import compose

    job = compose(["recipe=tiny_args", "data=ultrafeedback"])
    assert (job.data.source, job.data.path, job.data.prompt_format) == (
        "trl", "HuggingFaceH4/ultrafeedback_binarized", "chat"
    )  # fmt: skip
