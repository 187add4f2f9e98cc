"""Reading both input layouts, labels, the DONE check, and clear errors on bad input."""

from __future__ import annotations

import json

import pytest

from argsfw.eval.inputs import EvalInputError, cut_at_human, cut_at_turn, load_inputs, load_outputs


def test_predict_run_dir_and_file(make_run):
    run = make_run("r1", ["Paris.", "Eight.", "A joke."], method="args-greedy", weight=1.5, topk=10)
    for spec in (run, run / "outputs.jsonl"):
        inp = load_outputs(spec)
        assert inp.label == "args-greedy w=1.5 k=10"
        assert [r.continuation for r in inp.records] == ["Paris.", "Eight.", "A joke."]
        assert inp.complete is True and not inp.warnings
        assert inp.records[2].stats["peak_memory_bytes"] == 3 * 2**20


def test_original_layout_strips_prompt(make_original):
    inp = load_outputs(make_original("greedy_run.json", [" Paris.", " Eight.", " Ha."]))
    assert inp.label == "greedy" and inp.method == "greedy" and inp.complete is None
    assert inp.records[0].continuation == " Paris."


def test_named_spec_and_duplicate_labels(make_run, make_original):
    run = make_run("r1", ["a", "b", "c"], method="greedy")
    orig = make_original("o.json", ["a", "b", "c"])
    inputs = load_inputs([f"mine={run}", run, orig])
    assert [i.label for i in inputs] == ["mine", "greedy", "greedy#2"]


def test_label_falls_back_to_file_name(tmp_path):
    path = tmp_path / "my_outputs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "result": "c"}) + "\n")
    assert load_outputs(path).label == "my_outputs"


def test_incomplete_run_warns(make_run, caplog):
    run = make_run("partial", ["a", "b", "c"], done=False)
    inp = load_outputs(run)
    assert inp.complete is False
    assert any("not marked complete" in w for w in inp.warnings)
    assert "not marked complete" in caplog.text


def test_missing_file_names_path(tmp_path):
    with pytest.raises(EvalInputError, match="nope.jsonl"):
        load_outputs(tmp_path / "nope.jsonl")
    with pytest.raises(EvalInputError, match="outputs.jsonl"):
        load_outputs(tmp_path)  # a directory without outputs.jsonl


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "result": "c"}) + "\n\n{not json\n")
    with pytest.raises(EvalInputError, match=r"bad\.jsonl:3: not valid JSON") as e:
        load_outputs(path)
    assert "\n" not in str(e.value)


def test_missing_field_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "p", "result": "c"}) + "\n" + json.dumps({"result": "c"}) + "\n"
    )
    with pytest.raises(EvalInputError, match=r"bad\.jsonl:2: missing .*'prompt'"):
        load_outputs(path)
    path.write_text(json.dumps([{"prompt": "p"}]))
    with pytest.raises(EvalInputError, match=r"item 0: needs a string 'result' or 'response'"):
        load_outputs(path)


def test_empty_file_and_no_inputs(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(EvalInputError, match="holds no records"):
        load_outputs(tmp_path / "e.jsonl")
    with pytest.raises(EvalInputError, match="no outputs"):
        load_inputs([])


def test_cuts():
    assert cut_at_human(" Sure.\n\nHUMAN: more") == " Sure.\n\n"
    assert cut_at_human(" I'm only human: sorry") == " I'm only "  # the original's rule, any case
    assert cut_at_turn(" Sure.\n\nHuman: more") == " Sure."
    assert cut_at_turn(" Ok###Human: x") == " Ok"
    assert cut_at_turn("\n\nHuman: only a new turn") == " "


def test_label_written_by_predict_is_used(tmp_path):
    # predict.label (e.g. "ppo-greedy" for the PPO policy decoded greedily) names the row
    path = tmp_path / "outputs.jsonl"
    rec = {"prompt": "p", "result": "c", "method": "greedy", "label": "ppo-greedy"}
    path.write_text(json.dumps(rec) + "\n")
    assert load_outputs(path).label == "ppo-greedy"
    assert load_outputs(f"named={path}").label == "named"
