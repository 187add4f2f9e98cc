"""The stages of the other entry points: predict (decode prompts), evaluate (score outputs) and
pipeline (chain the others)."""

from __future__ import annotations

from dataclasses import dataclass, field

from argsfw.config.checks import _at_least, _choice
from argsfw.errors import ConfigError
from argsfw.eval.config import EvalConfig
from argsfw.stages import Stage, register


@dataclass
class PredictConfig:
    """Options of ``python -m argsfw.predict`` that are not decoding settings."""

    # prompts over a context limit: skip | truncate (keep the last tokens) | error (stop before decoding)
    too_long: str = "skip"
    strict_tokenizer: bool = (
        False  # policy/RM tokenizers differ: error, not the cross-tokenizer scorer
    )
    legacy_json: bool = False  # also write outputs_original.json: [{prompt, response, method}]
    label: str | None = None  # this output's name in records and reports (default: from settings)
    log_every_n_batches: int = 10  # throughput metrics to the logger every N batches

    def __post_init__(self) -> None:
        _choice("predict.too_long", self.too_long, ("skip", "truncate", "error"))
        _at_least("predict.log_every_n_batches", self.log_every_n_batches, 1)


@dataclass
class PipelineConfig:
    """Stages chained by ``python -m argsfw.pipeline``, each run in ``<run_dir>/<step>``.

    In any override, ``@NAME`` stands for fit step NAME's run directory. The first fit step
    whose stage makes a policy (``Stage.makes``: sft) gives every predict step its ``policy``,
    the first that makes a sequence reward model (rm) its ``reward_model`` (and evaluate's); a
    step's own overrides (or a predict step's ``recipe=``) win.
    """

    # fit step name -> "RECIPE key=value ...", run in this order (a new stage is one more line)
    fit: dict[str, str] = field(default_factory=dict)
    fit_overrides: list[str] = field(default_factory=list)  # applied to every fit step
    predict_recipe: str | None = None  # predict recipe every decode step starts from
    # step name -> its overrides ("-m" sweeps allowed)
    predict: dict[str, str] = field(default_factory=dict)
    predict_overrides: list[str] = field(default_factory=list)  # applied to every predict step
    evaluate: str | None = None  # evaluate recipe run over every predict output
    evaluate_overrides: list[str] = field(default_factory=list)
    # steps run at once: a step starts when the fit steps it names (@NAME) are done (evaluate
    # waits for every step); with jobs > 1 each step's output goes to <run_dir>/logs/<step>.log
    # and its num_threads is the machine's cores / jobs
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"pipeline.jobs={self.jobs} must be >= 1 (steps run at once)")
        for name, spec in self.fit.items():
            if not str(spec or "").strip():
                raise ConfigError(
                    f"pipeline.fit.{name} is empty; give its fit recipe, e.g. {name}: tiny_{name}"
                )


def _check_predict(job) -> None:
    from argsfw.decoding.config import check_decode_settings

    try:  # the checks that need no model; vocabulary and context follow once the models'
        # configs are read (argsfw.prediction.preflight), before any weight loads
        check_decode_settings(job.decode, prefix="decode.")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_evaluate(job) -> None:
    from argsfw.eval.config import check_eval_config

    try:
        check_eval_config(job.eval)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


PREDICT = register(
    Stage(
        name="predict",
        entry="predict",
        summary="decode prompts with a decoding method into outputs.jsonl (Lightning predict loop)",
        config=PredictConfig,
        trainer=True,
        sections=("model", "data", "trainer", "strategy", "logger", "decode"),
        makes="outputs.jsonl",
        check=_check_predict,
    )
)
EVALUATE = register(
    Stage(
        name="evaluate",
        entry="evaluate",
        summary="score predict outputs: reward, judge RM, oracle, diversity, coherence, plots",
        config=EvalConfig,
        section="eval",
        trainer=False,
        sections=("model", "data", "logger"),
        makes="report.md, report.json, plots",
        check=_check_evaluate,
    )
)
PIPELINE = register(
    Stage(
        name="pipeline",
        entry="pipeline",
        summary="fit, predict and evaluate steps chained in one run directory, resumable",
        config=PipelineConfig,
        trainer=False,
        sections=(),
        makes="a run directory per step",
    )
)
