"""``python -m argsfw.evaluate outputs=[RUN_OR_FILE,...] reward_model=RM [recipe=NAME] key=value ...``

Scores predict outputs (argsfw JSONL, predict run directories, folders of them, or the original
project's JSON lists) for reward, diversity, coherence, cost and optionally a pairwise judge,
and writes ``report.json``, ``report.md`` and ``plots/`` into the run directory, then a ``DONE``
marker: a report without it is from a run that did not finish.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from argsfw.cli import run_entry
from argsfw.config.run_dir import RunDir, redact
from argsfw.config.schema import JobConfig
from argsfw.errors import ConfigError

log = logging.getLogger("argsfw.evaluate")


def expand_outputs(specs: list[str]) -> list[str]:
    """Outputs to evaluate: files and run dirs as given; a folder of predict runs, each run in it.

    ``name=path`` keeps its label. Raises `ConfigError` when nothing is named or a folder
    holds no outputs.
    """
    if not specs:
        raise ConfigError(
            "name the outputs to evaluate: outputs=[runs/tiny_args,...] (predict run dirs, JSONL/JSON files, or name=path)"
        )
    from argsfw.eval.inputs import split_spec

    out: list[str] = []
    for spec in specs:
        _, p = split_spec(spec)
        if not p.exists():
            raise ConfigError(
                f"outputs path {str(p)!r} does not exist; name predict run directories, "
                "JSONL/JSON files or folders of runs: outputs=[runs/tiny_args,...]"
            )
        if p.is_dir() and not (p / "outputs.jsonl").is_file():
            found = sorted(q.parent for q in p.rglob("outputs.jsonl"))
            if not found:
                raise ConfigError(
                    f"outputs folder {str(p)!r} holds no outputs.jsonl; run python -m argsfw.predict first"
                )
            for run_dir in found:
                _require_finished(run_dir)
            out.extend(str(q) for q in found)
        else:
            if p.is_dir():
                _require_finished(p)
            out.append(spec)
    return out


def _require_finished(run_dir: Path) -> None:
    """Refuse a predict run directory without its DONE marker: its outputs may be partial.

    Naming the run's outputs.jsonl file instead evaluates them as they are (with a warning).
    """
    from argsfw.eval.inputs import DONE_MARKER

    is_run = (run_dir / "config.yaml").is_file() or (run_dir / "meta.json").is_file()
    if is_run and not (run_dir / DONE_MARKER).exists():
        raise ConfigError(
            f"outputs {str(run_dir)!r} is an unfinished predict run (no {DONE_MARKER} marker): "
            "re-run its predict command to finish it, or name its outputs.jsonl to evaluate "
            "the partial outputs as they are"
        )


def check_reward_model(job: JobConfig) -> None:
    """Check the reward models (path, head, weights, tokenizer) before anything is written."""
    from argsfw.models import SEQ_CLS, check_head, check_tokenizer_files, check_weights

    specs = [("reward model", job.reward_model if "reward" in job.eval.metrics else None)]
    specs.append(("eval.judge_reward_model", job.eval.judge_reward_model))
    for what, spec in specs:
        if spec:
            check_head(spec, what, SEQ_CLS)
            check_weights(spec, what)
            check_tokenizer_files(spec, what)


def _oracle(job: JobConfig):
    """The tiny corpus's ground-truth scorer, an independent check of the RM (tiny data only)."""
    if job.data.source != "tiny":
        return None
    from argsfw.data import tiny_oracle_score

    return tiny_oracle_score


def _wandb_run(job: JobConfig, run: RunDir):
    if job.logger.name != "wandb":
        return None
    import wandb
    from omegaconf import OmegaConf

    from argsfw.loggers import wandb_home_fallback, wandb_mode, wandb_names

    if wandb_mode(job.logger.mode) != "disabled":
        wandb_home_fallback(run.path)
    config = redact(OmegaConf.to_container(OmegaConf.structured(job), resolve=True))
    return wandb.init(
        project=job.logger.project,
        entity=job.logger.entity,
        dir=str(run.path),
        mode=wandb_mode(job.logger.mode),
        config=config,
        reinit="finish_previous",
        **wandb_names(job.logger, run.path, job.stage),
    )


def _run(job: JobConfig, run: RunDir) -> None:
    from argsfw.eval.report import markdown
    from argsfw.eval.run import run_evaluation

    outputs = expand_outputs(list(job.outputs))
    if job.eval.judge.enabled and job.eval.judge.kind == "openai":
        from argsfw.eval.judge_clients import api_key_for, check_endpoint

        api_key_for(job.eval.judge)  # no key for a remote judge: refuse before any model is read
        check_endpoint(job.eval.judge)  # and a dead one, not after minutes of other metrics
    check_reward_model(job)
    if "instruments" in job.eval.metrics:  # the held-out pairs, before any model loads
        from argsfw.data.loading import check_data_files

        check_data_files(job.data, [job.data.eval_split])
    run.claim(job)  # before the first write: lock, and no other stage's run
    run.start(job, "evaluate")
    wb = _wandb_run(job, run)
    try:
        report = run_evaluation(
            outputs,
            job.eval,
            reward_model=job.reward_model,
            run_dir=run.path,
            oracle=_oracle(job),
            wandb_run=wb,
            pairs=(job.data, job.data.eval_split) if "instruments" in job.eval.metrics else None,
        )
    except BaseException:
        run.finish(status="failed")
        raise
    finally:
        if wb is not None:
            wb.finish()
    print(markdown(report))
    run.finish(inputs=len(report["inputs"]), reward_model=job.reward_model)
    log.info("report written to %s", run.path / "report.md")


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage errors)."""
    return run_entry("evaluate", _run, argv, default_recipe="evaluate")


if __name__ == "__main__":
    sys.exit(main())
