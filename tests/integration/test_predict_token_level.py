"""`python -m argsfw.predict` with token-level RMs: recipes tiny_genarm / tiny_token_rm_args.

One real subprocess (the command line a user types); the rest run `main` in-process.
"""

from __future__ import annotations

import json
from pathlib import Path

from argsfw.predict import main
from tests.integration._fit_helpers import run_module

COMMON = (
    "data.limit=3",
    "decode.batch_size=2",
    "decode.max_new_tokens=5",
    "logger=none",
    "trainer.enable_progress_bar=false",
)


def _args(recipe: str, policy, rm, run_dir: Path, *extra: str) -> list[str]:
    return [
        f"recipe={recipe}",
        f"policy={policy}",
        f"reward_model={rm}",
        f"run_dir={run_dir}",
        *COMMON,
        *extra,
    ]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "outputs.jsonl").read_text().splitlines()]


def test_genarm_recipe_as_a_subprocess(tiny_kit, token_kit, tmp_path):
    run = tmp_path / "genarm"
    run_module("predict", *_args("tiny_genarm", tiny_kit["policy"], token_kit["arm"], run))
    recs = _records(run)
    assert len(recs) == 3 and (run / "DONE").is_file()
    for r in recs:
        assert (r["method"], r["settings"]) == ("genarm", {"alpha": 1.0, "temperature": 0.5})
        assert r["label"] == "genarm alpha=1 T=0.5" and isinstance(r["reward"], float)
        # one RM forward per policy forward, the RM reading what the policy reads
        assert r["stats"]["rm_forwards"] == r["stats"]["llm_forwards"] > 0
        assert r["stats"]["rm_tokens_in"] == r["stats"]["llm_tokens_in"]


def test_token_rm_recipe_in_process(tiny_kit, token_kit, tmp_path):
    run = tmp_path / "token"
    assert main(_args("tiny_token_rm_args", tiny_kit["policy"], token_kit["token"], run)) == 0
    recs = _records(run)
    assert [r["method"] for r in recs] == ["token-rm"] * 3
    assert all(r["stats"]["rm_tokens_in"] == r["stats"]["llm_tokens_in"] for r in recs)


# Bad token-level inputs (wrong kind of RM, another vocabulary, non-finite alpha or weight) are
# rows of the one bad-input table, tests/integration/test_bad_inputs.py.


def test_unmarked_causal_lm_is_accepted_and_logged(
    tiny_kit, token_kit, tmp_path, caplog, monkeypatch
):
    from argsfw.decoding import token_level

    # the warning is once per process: an earlier test in this session may have used it up
    monkeypatch.setattr(token_level, "_UNMARKED_LOGGED", set())
    run = tmp_path / "unmarked"
    assert main(_args("tiny_token_rm_args", tiny_kit["policy"], token_kit["unmarked"], run)) == 0
    assert "without an argsfw reward_kind marker" in caplog.text
