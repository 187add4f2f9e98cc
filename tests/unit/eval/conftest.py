"""Fixtures for evaluation tests: outputs files in both layouts and a local judge server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_server import JudgeServer

PROMPTS = [
    "\n\nHuman: What is the capital of France?\n\nAssistant:",
    "\n\nHuman: How many legs does a spider have?\n\nAssistant:",
    "\n\nHuman: Tell me a joke.\n\nAssistant:",
]


def write_predict_run(
    run_dir: Path,
    continuations: list[str],
    method: str = "args-greedy",
    weight: float = 1.5,
    topk: int = 10,
    done: bool = True,
) -> Path:
    """A predict run directory: outputs.jsonl, config.yaml, meta.json and (if done) DONE."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "outputs.jsonl").open("w") as f:
        for i, (p, c) in enumerate(zip(PROMPTS, continuations)):
            rec = {
                "id": i,
                "prompt": p,
                "result": c,
                "response": p + c,
                "method": method,
                "weight": weight,
                "topk": topk,
                "mode": "greedy",
                "temperature": 0.7,
                "n_prompt_tokens": 12,
                "n_new_tokens": 8,
                "seconds": 0.5,
                "stats": {
                    "llm_forwards": 8,
                    "rm_forwards": 8 * topk,
                    "peak_memory_bytes": 2**20 * (i + 1),
                },
            }
            f.write(json.dumps(rec) + "\n")
    (run_dir / "config.yaml").write_text(
        f"decode:\n  method: {method}\n  weight: {weight}\n  topk: {topk}\n"
    )
    (run_dir / "meta.json").write_text("{}")
    if done:
        (run_dir / "DONE").write_text("")
    return run_dir


def write_original(path: Path, continuations: list[str], method: str = "greedy") -> Path:
    """The original project's layout: a JSON list of {prompt, response, method}."""
    path.write_text(
        json.dumps(
            [
                {"prompt": p, "response": p + c, "method": method}
                for p, c in zip(PROMPTS, continuations)
            ]
        )
    )
    return path


@pytest.fixture
def judge_server():
    """A scripted chat-completions server on 127.0.0.1 (`judge_server.JudgeServer`, answering
    with `canned_judge` unless scripted); yields ``(base_url, server)``, shut down after."""
    with JudgeServer() as server:
        yield server.url, server


@pytest.fixture
def make_run(tmp_path):
    """Factory: ``make_run(name, continuations, **setting)`` -> a predict run directory."""
    return lambda name, conts, **kw: write_predict_run(tmp_path / name, conts, **kw)


@pytest.fixture
def make_original(tmp_path):
    """Factory: ``make_original(name, continuations, method)`` -> an original-layout JSON file."""
    return lambda name, conts, method="greedy": write_original(tmp_path / name, conts, method)
