"""The predict run directory's files: torn writes, resume state, merge order, settings conflicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from argsfw.callbacks.outputs import (
    DONE,
    OUTPUTS,
    SKIPPED,
    OutputConflictError,
    check_settings,
    clear_outputs,
    cut_torn_tail,
    merge_outputs,
    part_path,
    read_jsonl,
    read_state,
    write_legacy_json,
)
from argsfw.errors import is_usage_error


def _rec(i: int, **kw) -> dict:
    return {
        "id": f"p{i}",
        "index": i,
        "prompt": f"Q{i}",
        "result": f" A{i}",
        "response": f"Q{i} A{i}",
        **kw,
    }


def _append(path: Path, records: list[dict], torn: str = "") -> None:
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + torn)


def test_torn_last_line_is_ignored_then_cut(tmp_path):
    p = part_path(tmp_path, 0)
    _append(p, [_rec(0), _rec(1)], torn='{"id": "p2", "prom')
    assert [r["id"] for r in read_jsonl(p)] == ["p0", "p1"]
    cut_torn_tail(p)
    assert p.read_text().endswith("\n") and len(p.read_text().splitlines()) == 2
    cut_torn_tail(p)  # idempotent on a clean file
    assert len(read_jsonl(p)) == 2


def test_state_unions_parts_merged_and_skips(tmp_path):
    _append(tmp_path / OUTPUTS, [_rec(0)])
    _append(part_path(tmp_path, 0), [_rec(2), {"id": "p3", "index": 3, "skipped": "too_long"}])
    _append(part_path(tmp_path, 1), [_rec(1), _rec(0)])  # p0 again: a crash after merge
    state = read_state(tmp_path)
    assert state.done_ids == {"p0", "p1", "p2", "p3"}
    assert set(state.skipped) == {"p3"} and not state.done


def test_merge_orders_dedups_and_removes_parts(tmp_path):
    _append(tmp_path / OUTPUTS, [_rec(3)])
    _append(part_path(tmp_path, 0), [_rec(2), _rec(0, prompt_truncated=True)])
    _append(
        part_path(tmp_path, 1), [_rec(1), _rec(3), {"id": "p4", "index": 4, "skipped": "too_long"}]
    )
    order = {f"p{i}": i for i in range(5)}
    summary = merge_outputs(tmp_path, order)
    assert [r["id"] for r in read_jsonl(tmp_path / OUTPUTS)] == ["p0", "p1", "p2", "p3"]
    assert [r["id"] for r in read_jsonl(tmp_path / SKIPPED)] == ["p4"]
    assert not list(tmp_path.glob("outputs.part-*"))
    assert summary.written == 4 and summary.duplicates_dropped == 1
    assert summary.skipped == {"too_long": 1} and summary.truncated == 1
    assert not (tmp_path / DONE).exists()  # DONE is the caller's decision


def test_legacy_json_is_the_original_evaluation_layout(tmp_path):
    _append(tmp_path / OUTPUTS, [_rec(0), _rec(1)])
    rows = json.loads(write_legacy_json(tmp_path, "args-greedy w=1.5 k=10").read_text())
    assert rows == [
        {"prompt": "Q0", "response": "Q0 A0", "method": "args-greedy w=1.5 k=10"},
        {"prompt": "Q1", "response": "Q1 A1", "method": "args-greedy w=1.5 k=10"},
    ]


def test_different_settings_are_refused_in_one_line(tmp_path):
    _append(part_path(tmp_path, 0), [_rec(0)])
    state = read_state(tmp_path)
    old = {"decode": {"weight": 1.5, "topk": 10}, "policy": "a"}
    check_settings(tmp_path, old, dict(old), state)  # same settings: fine
    with pytest.raises(OutputConflictError) as e:
        check_settings(tmp_path, old, {"decode": {"weight": 0.5, "topk": 10}, "policy": "a"}, state)
    msg = str(e.value)
    assert "decode.weight: 1.5 -> 0.5" in msg and "run_dir=" in msg and "overwrite=true" in msg
    assert "\n" not in msg and is_usage_error(e.value)
    with pytest.raises(OutputConflictError, match="unknown"):
        check_settings(tmp_path, None, old, state)
    clear_outputs(tmp_path)
    check_settings(tmp_path, None, old, read_state(tmp_path))  # nothing left to conflict with


def test_prompt_datamodule_skips_done_ids_and_pads_short_shards(tmp_path):
    from types import SimpleNamespace

    from argsfw.data.types import PromptRecord
    from argsfw.modules.decode import PromptsDataModule

    _append(part_path(tmp_path, 0), [_rec(0), _rec(2)])
    records = [PromptRecord(id=f"p{i}", prompt=f"Q{i}") for i in range(4)]
    dm = PromptsDataModule(records, tmp_path, batch_size=2)
    dm.setup("predict")
    assert [t["ids"] for t in dm.todo] == ["p1", "p3"] and [t["index"] for t in dm.todo] == [1, 3]
    assert dm.already_done == 2
    batch = next(iter(dm.predict_dataloader()))
    assert batch == {"ids": ["p1", "p3"], "prompts": ["Q1", "Q3"], "index": [1, 3]}

    # 1 prompt left on 4 ranks: placeholders (id None) so every rank gets a sample.
    _append(part_path(tmp_path, 1), [_rec(1)])
    dm.trainer = SimpleNamespace(
        world_size=4, is_global_zero=True, strategy=SimpleNamespace(broadcast=lambda o, src: o)
    )
    dm.setup("predict")
    assert [t["ids"] for t in dm.todo] == ["p3", None, None, None]
