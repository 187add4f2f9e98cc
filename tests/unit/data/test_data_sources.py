"""Source adapters on hand-made files, selection, located errors, and the real shared files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from argsfw.data import (
    DataConfig,
    DataError,
    load_pairs,
    load_pairs_with_stats,
    load_prompts,
    load_prompts_with_stats,
)

H, A = "\n\nHuman:", "\n\nAssistant:"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


HH_ROWS = [
    # 0: ordinary two-turn dialogue
    {
        "chosen": f"{H} Hi{A} Hello.{H} Sum 2+2?{A} It is 4.",
        "rejected": f"{H} Hi{A} Hello.{H} Sum 2+2?{A} It is 5.",
    },
    # 1: reply containing an inline Human: turn (kept, flagged)
    {"chosen": f"{H} Q{A} Fine.  Human: ok", "rejected": f"{H} Q{A} No."},
    # 2: chosen reply holds a second "\n\nAssistant:" turn: contexts differ (dropped)
    {"chosen": f"{H} Q{A} One.{A} Two.", "rejected": f"{H} Q{A} Three."},
    # 3: empty chosen reply (dropped as a pair, kept as a prompt)
    {"chosen": f"{H} Q3{A}", "rejected": f"{H} Q3{A} Something."},
    # 4: identical (dropped as a pair, kept as a prompt)
    {"chosen": f"{H} Q4{A} Same.", "rejected": f"{H} Q4{A} Same."},
    # 5: no assistant turn at all (dropped everywhere)
    {"chosen": f"{H} only a question", "rejected": f"{H} only a question"},
]


def test_hh_rlhf_split_and_edge_cases(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl.gz", HH_ROWS)
    pairs, stats = load_pairs_with_stats(DataConfig(source="hh_rlhf", path=str(path), split="test"))
    assert [p.id for p in pairs] == ["hh_rlhf-test-0", "hh_rlhf-test-1"]
    assert pairs[0].prompt == f"{H} Hi{A} Hello.{H} Sum 2+2?{A}"
    assert (pairs[0].chosen, pairs[0].rejected) == (" It is 4.", " It is 5.")
    assert pairs[0].chosen_text == HH_ROWS[0]["chosen"]
    assert pairs[1].chosen == " Fine.  Human: ok"
    assert (stats.read, stats.kept) == (6, 2)
    assert stats.dropped == {
        "context_mismatch": 1,
        "empty_response": 1,
        "identical": 1,
        "no_assistant_turn": 1,
    }
    assert stats.flagged == {"reply_has_human_turn": 1}

    prompts, pstats = load_prompts_with_stats(
        DataConfig(source="hh_rlhf", path=str(path), eval_split="test")
    )
    assert [p.id for p in prompts] == [
        "hh_rlhf-test-0",
        "hh_rlhf-test-1",
        "hh_rlhf-test-3",
        "hh_rlhf-test-4",
    ]
    assert prompts[2].prompt == f"{H} Q3{A}"
    assert pstats.dropped == {"context_mismatch": 1, "no_assistant_turn": 1}


def test_dahoas_layout(tmp_path):
    rows = [
        {"prompt": f"{H} Q{A}", "response": " a", "chosen": " a", "rejected": " b"},
        {"prompt": f"{H} R{A}", "response": " c", "chosen": " c", "rejected": " d", "id": "x7"},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    pairs = load_pairs(DataConfig(source="dahoas", path=str(path)))
    assert [(p.prompt, p.chosen, p.rejected, p.id) for p in pairs] == [
        (f"{H} Q{A}", " a", " b", "dahoas-train-0"),
        (f"{H} R{A}", " c", " d", "x7"),
    ]


def test_shp_prompt_format_labels_and_one_prompt_per_post(tmp_path):
    rows = [
        {"post_id": "p1", "history": "Why?", "human_ref_A": "A1", "human_ref_B": "B1", "labels": 1},
        {"post_id": "p1", "history": "Why?", "human_ref_A": "A2", "human_ref_B": "B2", "labels": 0},
        {"post_id": "p2", "history": "How?", "human_ref_A": "A3", "human_ref_B": "B3", "labels": 1},
    ]
    path = write_jsonl(tmp_path / "shp.jsonl", rows)
    cfg = DataConfig(source="shp", path=str(path), split="test", eval_split="test")
    pairs = load_pairs(cfg)
    assert pairs[0].prompt == " Human: Why? Assistant: "
    assert [(p.chosen, p.rejected, p.id) for p in pairs] == [
        ("A1", "B1", "p1-0"),
        ("B2", "A2", "p1-1"),
        ("A3", "B3", "p2-0"),
    ]
    prompts, stats = load_prompts_with_stats(cfg)
    assert [(p.id, p.prompt) for p in prompts] == [
        ("p1", " Human: Why? Assistant: "),
        ("p2", " Human: How? Assistant: "),
    ]
    assert stats.dropped == {"duplicate_prompt_id": 1}


def test_generic_json_fields_array_file(tmp_path):
    rows = [
        {"q": "P1", "good": " g", "bad": " b", "key": 11},
        {"q": "P2", "good": " g2", "bad": " b2", "key": 12},
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    cfg = DataConfig(
        source="json",
        path=str(path),
        fields={"prompt": "q", "chosen": "good", "rejected": "bad", "id": "key"},
    )
    assert [(p.prompt, p.chosen, p.rejected, p.id) for p in load_pairs(cfg)] == [
        ("P1", " g", " b", "11"),
        ("P2", " g2", " b2", "12"),
    ]
    only_prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"q": "just a prompt"}])
    cfg = DataConfig(source="json", path=str(only_prompts), fields={"prompt": "q"})
    assert (
        load_prompts(cfg) == [load_prompts(cfg)[0]]
        and load_prompts(cfg)[0].prompt == "just a prompt"
    )


def test_directory_glob_and_split_placeholder(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": " c", "rejected": " r"} for i in range(4)]
    write_jsonl(tmp_path / "train.jsonl", rows[:2])
    write_jsonl(tmp_path / "test.jsonl", rows[2:])
    cfg = DataConfig(source="json", path=str(tmp_path))
    assert [p.prompt for p in load_pairs(cfg, "train")] == ["p0", "p1"]
    assert [p.prompt for p in load_pairs(cfg, "test")] == ["p2", "p3"]
    assert [
        p.prompt for p in load_pairs(DataConfig(source="json", path=str(tmp_path / "*.jsonl")))
    ] == ["p2", "p3", "p0", "p1"]
    assert (
        len(load_pairs(DataConfig(source="json", path=str(tmp_path / "{split}.jsonl")), "test"))
        == 2
    )
    with pytest.raises(DataError, match=r"has splits \['test', 'train'\] but not 'validation'"):
        load_pairs(cfg, "validation")


def test_selection_run_percent_offset_limit(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": " c", "rejected": " r"} for i in range(10)]
    path = str(write_jsonl(tmp_path / "d.jsonl", rows))

    def prompts(**kw):
        return [p.prompt for p in load_pairs(DataConfig(source="json", path=path, **kw))]

    assert prompts(run_percent=25) == ["p0", "p1", "p2"]  # ceil(2.5): the first X% in order
    assert prompts(offset=3, limit=2) == ["p3", "p4"]
    assert prompts(run_percent=50, offset=4, limit=9) == ["p4"]


def test_val_fraction_carve_is_deterministic_and_disjoint(tmp_path):
    rows = [{"prompt": f"p{i % 50}", "chosen": f" c{i}", "rejected": " r"} for i in range(200)]
    cfg = DataConfig(
        source="json", path=str(write_jsonl(tmp_path / "d.jsonl", rows)), val_fraction=0.2
    )
    train, val = load_pairs(cfg), load_pairs(cfg, "validation")
    assert len(train) + len(val) == 200 and 0 < len(val) < 100
    assert not {p.prompt for p in train} & {p.prompt for p in val}  # one prompt never on both sides
    assert [p.id for p in val] == sorted(
        (p.id for p in val), key=lambda s: int(s.rsplit("-", 1)[1])
    )
    assert load_pairs(cfg, "validation") == val


def test_missing_path_names_path_and_expectation(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as exc:
        load_pairs(DataConfig(source="hh_rlhf", path=str(missing)))
    msg = str(exc.value)
    assert str(missing) in msg and ".jsonl" in msg and "\n" not in msg
    with pytest.raises(DataError, match="no files match"):
        load_pairs(DataConfig(source="json", path=str(tmp_path / "*.jsonl")))
    with pytest.raises(DataError, match="needs data.path"):
        load_pairs(DataConfig(source="dahoas"))


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"chosen": "a", "rejected": "b"}\n\n{"chosen": "a", "rejected": \n')
    with pytest.raises(DataError) as exc:
        load_pairs(DataConfig(source="hh_rlhf", path=str(path)))
    assert str(exc.value).startswith(f"{path}: line 3: invalid JSON") and "\n" not in str(exc.value)


def test_missing_field_names_file_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [{"chosen": f"{H} a{A} b", "rejected": f"{H} a{A} c"}, {"chosen": "x"}],
    )
    with pytest.raises(DataError) as exc:
        load_pairs(DataConfig(source="hh_rlhf", path=str(path)))
    assert str(exc.value).startswith(f"{path}: line 2: missing field 'rejected'")
    bad = write_jsonl(
        tmp_path / "l.jsonl",
        [{"post_id": "p", "history": "h", "human_ref_A": "a", "human_ref_B": "b", "labels": 3}],
    )
    with pytest.raises(DataError, match=r"l.jsonl: line 1: field 'labels' is 3"):
        load_pairs(DataConfig(source="shp", path=str(bad)))


def test_bad_config_and_duplicate_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"prompt": "p", "chosen": " c", "rejected": " r", "id": 1}] * 2
    )
    with pytest.raises(DataError, match="id '1' appears more than once"):
        load_pairs(DataConfig(source="json", path=str(path)))
    with pytest.raises(DataError, match="unknown data.source"):
        load_pairs(DataConfig(source="csv", path=str(path)))
    with pytest.raises(DataError, match="run_percent"):
        load_pairs(DataConfig(source="json", path=str(path), run_percent=0))


# ------------------------------------------------------------------ the real shared files


# Where the numbers below come from: the `read` counts are the files' line counts
# (`zcat FILE | wc -l`: harmless-base/test 2312, helpful-base/test-part-a 1600, shp-format
# anthropic_helpful_test-part-a 1590). The dropped/flagged counts, and so the kept pairs
# (read - dropped: 2303, 1587, 1586) and prompts, were recorded from a run of these loaders on the
# shared files when the tests were written (commit b673d17, 2026-11-25); a change to the
# adapters' rules that moves them must say why. 159 is 10% of SHP's 1590 prompts.


def test_shared_hh_rlhf_files(shared_data):
    harmless = DataConfig(
        source="hh_rlhf",
        path=str(shared_data / "hh-rlhf/harmless-base/test.jsonl.gz"),
        split="test",
    )
    pairs, stats = load_pairs_with_stats(harmless)
    assert stats.read == 2312
    assert stats.dropped == {"context_mismatch": 5, "empty_response": 4}
    assert stats.flagged == {"reply_has_human_turn": 31}
    assert len(pairs) == 2303 and len({p.id for p in pairs}) == 2303
    assert all(
        p.prompt.startswith("\n\nHuman: ") and p.prompt.endswith("\n\nAssistant:") for p in pairs
    )

    helpful = DataConfig(
        source="hh_rlhf", path=str(shared_data / "hh-rlhf/helpful-base"), split="test"
    )
    pairs, stats = load_pairs_with_stats(helpful)  # a directory: datasets infers the test split
    assert stats.read == 1600
    assert stats.dropped == {"context_mismatch": 9, "empty_response": 3, "identical": 1}
    assert len(pairs) == 1587
    assert len(load_prompts(DataConfig(**{**helpful.__dict__, "eval_split": "test"}))) == 1591


def test_shared_shp_file(shared_data):
    cfg = DataConfig(
        source="shp",
        path=str(shared_data / "shp-format/anthropic_helpful_test-part-a.jsonl.gz"),
        split="test",
        eval_split="test",
    )
    pairs, stats = load_pairs_with_stats(cfg)
    assert (
        stats.read == 1590
        and stats.dropped == {"empty_response": 3, "identical": 1}
        and len(pairs) == 1586
    )
    prompts = load_prompts(cfg)
    assert len(prompts) == 1590  # every post_id in this file is unique
    assert prompts[0].prompt.startswith(" Human: HUMAN: ") and prompts[0].prompt.endswith(
        " Assistant: "
    )
    assert len(load_prompts(DataConfig(**{**cfg.__dict__, "run_percent": 10.0}))) == 159


def test_hub_id_goes_through_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, split=None, **kw):
        calls.append((path, split))
        if split != "test":
            raise ValueError("Unknown split \"train\".\nShould be one of ['test'].")
        return datasets.Dataset.from_list(
            [{"prompt": f"{H} Q{A}", "response": " a", "chosen": " a", "rejected": " b"}]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = DataConfig(source="dahoas", path="Dahoas/full-hh-rlhf", eval_split="test")
    assert load_prompts(cfg)[0].id == "dahoas-test-0"
    assert calls == [("Dahoas/full-hh-rlhf", "test")]
    with pytest.raises(DataError) as exc:
        load_pairs(cfg)
    assert "'Dahoas/full-hh-rlhf' split 'train'" in str(exc.value) and "\n" not in str(exc.value)
