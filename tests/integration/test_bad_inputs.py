"""Bad inputs, one table: each case exits 2 with one line naming the bad thing and the fix.

Every row of `CASES` runs ``argsfw.<entry>.main(ARGS)`` (what ``python -m argsfw.<entry> ARGS``
runs; a few rows also as real processes, see `PROCESS_CASES`) and asserts:

- exit code 2, and no ``Traceback`` anywhere in stdout or stderr;
- stderr ends with exactly one ``argsfw <entry>: error: ...`` line that contains every string of
  ``expect`` (write them so that together they name the bad thing *and* the fix) and a fix verb;
- nothing that looks complete under the case's run directory (or export out dir): no ``DONE``,
  no ``hf/``, no ``report.json``, no ``meta.json`` with status ``completed``.

To add a case, append a `Case` to `CASES`:

    Case("predict-topk-0", "predict", ["recipe=tiny_args", ..., "decode.topk=0"], ["decode.topk", "in [1, vocabulary]"])

In ``args``, ``{run}`` is the case's own (fresh, not yet existing) run directory and ``{name}``
any path of `world` (tiny policy and reward model, broken copies of them, predict runs, data
files): add a path there when a case needs a new kind of input. Entries other than ``export``
get ``run_dir={run}`` and ``logger.name=none`` appended unless the case sets ``plain=True``.
``env`` adds environment variables (``CUDA_VISIBLE_DEVICES=""`` makes "no GPU" true anywhere).

Cases must fail at start-up, before a model loads or Lightning starts a loop. Rows run in this
process, one after another, so the imports are paid once and the table takes seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _fit_helpers import run_module

# predict on the tiny kit: the recipe's models replaced by the session's tiny ones
PREDICT = ["recipe=tiny_args", "policy={policy}", "reward_model={rm}", "data.limit=4"]
# the same with a token-level reward model (GenARM's ARM, a token-level head)
GENARM = ["recipe=tiny_genarm", "policy={policy}", "reward_model={arm}", "data.limit=4"]
TOKEN_RM = [
    "recipe=tiny_token_rm_args",
    "policy={policy}",
    "reward_model={token_rm}",
    "data.limit=4",
]
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}
# a fix the message proposes: every error line must contain one of these
FIX = re.compile(
    r"\b(use|set|pass|choose|lower|name|re-run|check|save|make|re-export|run|must be|one of|"
    r"did you mean|available|make it|give|copy|carve|raise|produce|download)\b"
)


@dataclass
class Case:
    """One bad input: the entry point, its arguments and what the error line must say."""

    id: str
    entry: str  # fit | predict | evaluate | export | pipeline
    args: list[str]
    expect: list[str]  # substrings of the error line: the bad thing and the fix
    env: dict[str, str] = field(default_factory=dict)
    plain: bool = False  # do not append run_dir={run} logger.name=none


CASES = [
    # ---- fit: composition and schema ranges
    Case("fit-unknown-recipe", "fit", ["recipe=no_such_recipe"], ["unknown recipe 'no_such_recipe'", "available recipes: "]),
    Case("fit-unknown-key", "fit", ["recipe=tiny_sft", "optim.lrr=1"], ["unknown config key 'optim.lrr'", "did you mean optim.lr"]),
    Case("fit-predict-recipe", "fit", ["recipe=tiny_args"], ["is a predict recipe", "python -m argsfw.predict"]),
    Case("fit-devices-0", "fit", ["recipe=tiny_sft", "trainer.devices=0"], ["trainer.devices=0", "must be an integer >= 1"]),
    Case("fit-no-gpu", "fit", ["recipe=tiny_sft", "trainer.accelerator=gpu"], ["trainer.accelerator=gpu", "no CUDA GPU", "use trainer=cpu"], env=NO_GPU),
    Case("fit-lr-negative", "fit", ["recipe=tiny_sft", "optim.lr=-1"], ["optim.lr=-1.0", "must be a finite number > 0"]),
    Case("fit-micro-batch-too-big", "fit", ["recipe=tiny_sft", "optim.micro_batch_size=64"], ["optim.micro_batch_size=64 is larger than", "lower micro_batch_size"]),
    Case("fit-batch-not-multiple", "fit", ["recipe=tiny_sft", "optim.batch_size=30", "optim.micro_batch_size=8"], ["optim.batch_size=30 is not a multiple", "make the global batch"]),
    Case("fit-warmup-negative", "fit", ["recipe=tiny_sft", "optim.warmup_steps=-5"], ["optim.warmup_steps=-5", "must be an integer >= 0"]),
    Case("fit-max-steps-0", "fit", ["recipe=tiny_sft", "trainer.max_steps=0"], ["trainer.max_steps=0", "must be an integer >= 1, or -1"]),
    Case("fit-max-epochs-0", "fit", ["recipe=tiny_sft", "trainer.max_epochs=0"], ["trainer.max_epochs=0", "must be an integer >= 1, or -1"]),
    Case("fit-bad-precision", "fit", ["recipe=tiny_sft", "trainer.precision=fp8"], ["trainer.precision='fp8'", "choose one of", "bf16-mixed"]),
    Case("fit-lora-rank-0", "fit", ["recipe=tiny_sft", "model.lora.enabled=true", "model.lora.r=0"], ["model.lora.r=0", "must be an integer >= 1"]),
    Case("fit-ppo-gamma", "fit", ["recipe=tiny_ppo", "ppo.gamma=1.5"], ["ppo.gamma=1.5", "must be in [0, 1]"]),
    Case("fit-resume-and-overwrite", "fit", ["recipe=tiny_sft", "resume=true", "overwrite=true"], ["resume=true and overwrite=true", "pass one"]),
    # ---- fit: data
    Case("fit-data-file-missing", "fit", ["recipe=tiny_sft", "data.source=json", "data.path={missing}/pairs.jsonl"], ["data path", "pairs.jsonl' does not exist", "set data.path to a .json"]),
    Case("fit-json-without-path", "fit", ["recipe=tiny_sft", "data.source=json"], ["data.source=json needs data.path"]),
    Case("fit-tiny-bad-split", "fit", ["recipe=tiny_sft", "data.split=nope"], ["data.split='nope'", "set data.split to one of them"]),
    Case("fit-bad-data-split", "fit", ["recipe=tiny_sft", "data.source=hh_rlhf", "data.path={data_dir}", "data.eval_split=dev"], ["has splits ['test', 'train'] but not 'dev'", "set data.split/eval_split"]),
    Case("fit-val-fraction", "fit", ["recipe=tiny_sft", "data.val_fraction=1.5"], ["data.val_fraction must be in [0, 1)"]),
    # ---- fit: model inputs
    Case("fit-rm-as-sft-policy", "fit", ["recipe=tiny_sft", "policy={rm}"], ["is a sequence classifier (reward model)", "pass a causal LM"]),
    Case("fit-ppo-lm-as-rm", "fit", ["recipe=tiny_ppo", "policy={policy}", "reward_model={policy}"], ["reward model", "is a causal language model", "pass a scalar reward model"]),
    Case("fit-ppo-missing-policy", "fit", ["recipe=tiny_ppo", "policy={missing}/sft", "reward_model={rm}"], ["policy path", "does not exist"]),
    Case("fit-truncated-weights", "fit", ["recipe=tiny_sft", "policy={truncated}"], ["model.safetensors cannot be read", "truncated or corrupt", "re-export it"]),
    Case("fit-no-tokenizer", "fit", ["recipe=tiny_sft", "policy={no_tokenizer}"], ["holds no tokenizer", "tokenizer.save_pretrained"]),
    Case("fit-hub-id-offline", "fit", ["recipe=tiny_sft", "model.base=no-such-org/no-such-model"], ["'no-such-org/no-such-model' is neither a local directory nor a hub model", "download the model first"], env={"HF_HUB_OFFLINE": "1"}),
    Case("fit-rm-init-without-policy", "fit", ["recipe=tiny_rm", "rm.init_from_policy=true"], ["rm.init_from_policy=true needs policy=", "python -m argsfw.fit recipe=tiny_sft"]),
    Case("fit-existing-run", "fit", ["recipe=tiny_sft", "run_dir={used_run}", "logger.name=none"], ["already holds a run", "pass resume=true", "overwrite=true"], plain=True),
    # ---- predict: settings, before any model
    Case("predict-devices-0", "predict", [*PREDICT, "trainer.devices=0"], ["trainer.devices=0", "must be an integer >= 1"]),
    Case("predict-no-gpu", "predict", [*PREDICT, "trainer.accelerator=cuda"], ["trainer.accelerator=cuda", "no CUDA GPU", "use trainer=cpu"], env=NO_GPU),
    Case("predict-batch-size-0", "predict", [*PREDICT, "decode.batch_size=0"], ["decode.batch_size must be a positive integer, got 0"]),
    Case("predict-topk-0", "predict", [*PREDICT, "decode.topk=0"], ["decode.topk must be an integer in [1, vocabulary], got 0"]),
    Case("predict-weight-nan", "predict", [*PREDICT, "decode.weight=nan"], ["decode.weight must be a finite number, got nan"]),
    Case("predict-temperature-0", "predict", [*PREDICT, "decode=args_stochastic", "decode.temperature=0"], ["decode.temperature must be a number > 0, or null, got 0.0"]),
    Case("predict-unknown-method", "predict", [*PREDICT, "decode.method=beam"], ["decode.method='beam' is not a decoding method", "choose one of args-greedy"]),
    Case("predict-unknown-decode-group", "predict", [*PREDICT, "decode=gredy"], ["decode.method='gredy' is not a decoding method", "did you mean greedy?", "choose one of args-greedy"]),
    Case("predict-best-of-n-0", "predict", [*PREDICT, "decode=best_of_n", "decode.num_samples=0"], ["decode.num_samples must be an integer >= 1, got 0"]),
    Case("predict-top-p", "predict", [*PREDICT, "decode=nucleus", "decode.top_p=1.5"], ["decode.top_p must be a number in (0, 1], got 1.5"]),
    Case("predict-chunk-size-0", "predict", [*PREDICT, "decode=args_greedy_large", "decode.chunk_size=0"], ["decode.chunk_size must be an integer >= 1, or auto or null, got 0"]),
    Case("predict-deepspeed", "predict", [*PREDICT, "strategy=deepspeed_zero2"], ["predict runs data-parallel", "use strategy=auto or strategy=ddp"]),
    Case("predict-config-file-missing", "predict", [*PREDICT, "decode.config_file={missing}/example.config"], ["decode.config_file", "does not exist; name a file with one JSON object per line"]),
    # ---- predict: model inputs and their configs, before the weights load
    Case("predict-rm-as-policy", "predict", [*PREDICT, "policy={rm}"], ["policy", "is a sequence classifier (reward model)", "LlamaForSequenceClassification", "pass a causal LM"]),
    Case("predict-lm-as-rm", "predict", [*PREDICT, "reward_model={policy}"], ["needs a sequence reward model", "unmarked causal LM", "pass a matching reward_model or use decode.method=genarm"]),
    Case("predict-missing-policy", "predict", [*PREDICT, "policy={missing}/sft"], ["policy path", "does not exist", "python -m argsfw.fit recipe=tiny_sft"]),
    Case("predict-truncated-weights", "predict", [*PREDICT, "policy={truncated}"], ["model.safetensors cannot be read", "truncated or corrupt", "re-export it"]),
    Case("predict-no-tokenizer", "predict", [*PREDICT, "policy={no_tokenizer}"], ["holds no tokenizer", "tokenizer.save_pretrained"]),
    Case("predict-topk-over-vocab", "predict", [*PREDICT, "decode.topk=100000"], ["decode.topk must be an integer in [1, ", "(the vocabulary size), got 100000"]),
    Case("predict-max-new-tokens-over-context", "predict", [*PREDICT, "decode.max_new_tokens=600"], ["decode.max_new_tokens=600 leaves no room", "context of 512 tokens", "set decode.max_new_tokens below 512"]),
    Case("predict-every-prompt-too-long", "predict", [*PREDICT, "decode.max_new_tokens=505"], ["none of the 4 prompts can be decoded", "lower decode.max_new_tokens or set predict.too_long=truncate"]),
    Case("predict-every-prompt-empty", "predict", [*PREDICT, "data.source=json", "data.path={empty_prompts}"], ["all 3 prompts are empty", "check data.source / data.fields.prompt"]),
    Case("predict-no-prompts", "predict", [*PREDICT, "data.source=hh_rlhf", "data.path={no_prompts}"], ["no prompts to decode", "no_assistant_turn=2", "check data.path"]),
    # ---- evaluate
    Case("evaluate-no-outputs", "evaluate", [], ["name the outputs to evaluate: outputs=["]),
    Case("evaluate-one-path-missing", "evaluate", ["outputs={missing}/run"], ["outputs path", "does not exist", "outputs=[runs/tiny_args,...]"]),
    Case("evaluate-unfinished-run", "evaluate", ["outputs={partial_run}"], ["is an unfinished predict run (no DONE marker)", "re-run its predict command"]),
    Case("evaluate-folder-without-outputs", "evaluate", ["outputs={empty_dir}"], ["holds no outputs.jsonl", "run python -m argsfw.predict first"]),
    Case("evaluate-unknown-metric", "evaluate", ["outputs={done_run}", "eval.metrics=[rewardd]"], ["eval.metrics: unknown metric(s) ['rewardd']", "choose from"]),
    Case("evaluate-length-baseline-not-a-row", "evaluate", ["outputs={done_run}", "eval.length_baseline=greedyy"], ["eval.length_baseline='greedyy' is not one of the rows", "name one of them"]),
    Case("evaluate-instruments-without-pairs", "evaluate", ["outputs={done_run}", "eval.metrics=[instruments]", "data=hh_rlhf", "data.path={missing}/pairs.jsonl"], ["data path", "does not exist"]),
    Case("evaluate-lm-as-rm", "evaluate", ["outputs={done_run}", "reward_model={policy}"], ["reward model", "is a causal language model", "pass a scalar reward model"]),
    Case("evaluate-no-gpu", "evaluate", ["outputs={done_run}", "eval.device=cuda"], ["eval.device=cuda", "no CUDA GPU", "use eval.device=cpu"], env=NO_GPU),
    # ---- export
    Case("export-missing-checkpoint", "export", ["{missing}/last.ckpt", "{run}"], ["last.ckpt does not exist", "e.g. <run_dir>/checkpoints/last.ckpt"]),
    Case("export-out-dir-not-empty", "export", ["{garbage_ckpt}", "{used_dir}"], ["already exists and is not empty", "choose a new directory or pass --overwrite"]),
    Case("export-overwrite-non-model-dir", "export", ["{garbage_ckpt}", "{used_dir}", "--overwrite"], ["is not a Hugging Face model directory", "choose a new directory"]),
    Case("export-no-run-config", "export", ["{garbage_ckpt}", "{run}"], ["no run config at", "pass --config <run_dir>/config.yaml"]),
    Case("export-unreadable-checkpoint", "export", ["{garbage_ckpt}", "{run}", "--config", "{sft_config}"], ["cannot be read", "use another one from the run's checkpoints/"]),
    Case("export-ds-chat-missing", "export", ["--from-deepspeed-chat", "{missing}/ds", "{run}"], ["no DeepSpeed-Chat weights at", "pass the file, or the directory holding pytorch_model.bin"]),
    # ---- pipeline: every step composes before the first runs
    Case("pipeline-step-wrong-stage", "pipeline", ["recipe=tiny_pipeline", "pipeline.fit.sft=tiny_args"], ["pipeline step 'sft'", "is a predict recipe, not a fit one; name a fit recipe"]),
    Case("pipeline-step-unknown-recipe", "pipeline", ["recipe=tiny_pipeline", "pipeline.fit.rm=no_such_rm"], ["pipeline step 'rm'", "unknown recipe 'no_such_rm'", "available recipes"]),
    Case("pipeline-bad-fit-override", "pipeline", ["recipe=tiny_pipeline", "pipeline.fit_overrides=['optim.lr=-1']"], ["pipeline step 'sft'", "optim.lr=-1.0", "must be a finite number > 0"]),
    Case("pipeline-bad-decode-option", "pipeline", ["recipe=tiny_pipeline", "pipeline.predict.greedy='decode=gredy'"], ["pipeline step 'predict greedy'", "decode.method='gredy' is not a decoding method", "did you mean greedy?"]),
    Case("pipeline-unknown-key", "pipeline", ["recipe=tiny_pipeline", "pipeline.stages=[sft]"], ["unknown config key 'pipeline.stages'"]),
    Case("pipeline-predict-without-recipe", "pipeline", ["recipe=tiny_pipeline", "pipeline.predict_recipe=null"], ["pipeline.predict needs pipeline.predict_recipe", "pipeline.predict_recipe=tiny_args"]),
    # ---- run dirs (issue 19): one process per run dir; a run of another stage is left alone
    Case("fit-run-dir-in-use", "fit", ["recipe=tiny_sft", "run_dir={locked_run}", "logger.name=none"], ["is in use by argsfw pid", "choose another run_dir="], plain=True),
    Case("predict-run-dir-in-use", "predict", [*PREDICT, "run_dir={locked_run}", "logger.name=none"], ["is in use by argsfw pid", "choose another run_dir="], plain=True),
    Case("evaluate-run-dir-in-use", "evaluate", ["outputs={done_run}", "reward_model={rm}", "run_dir={locked_run}", "logger.name=none"], ["is in use by argsfw pid", "choose another run_dir="], plain=True),
    Case("pipeline-run-dir-in-use", "pipeline", ["recipe=tiny_pipeline", "run_dir={locked_run}", "logger.name=none"], ["is in use by argsfw pid", "choose another run_dir="], plain=True),
    Case("fit-resume-other-stage", "fit", ["recipe=tiny_sft", "resume=true", "run_dir={rm_run}", "logger.name=none"], ["holds a rm run (recipe tiny_rm), not a sft one", "choose another run_dir="], plain=True),
    Case("predict-into-fit-run", "predict", [*PREDICT, "run_dir={rm_run}", "logger.name=none"], ["holds a rm run (recipe tiny_rm), not a predict one", "choose another run_dir="], plain=True),
    # ---- every float setting finite; the original's config file typed (issue 19)
    Case("predict-temperature-inf", "predict", [*PREDICT, "decode=args_stochastic", "decode.temperature=inf"], ["decode.temperature must be a finite number, got inf", "set a finite value"]),
    Case("predict-genarm-temperature-inf", "predict", [*PREDICT, "decode=genarm", "decode.temperature=inf"], ["decode.temperature must be a finite number, got inf"]),
    Case("evaluate-retry-after-inf", "evaluate", ["outputs={done_run}", "eval.judge.max_retry_after=inf"], ["eval.judge.max_retry_after must be a finite number, got inf"]),
    Case("predict-config-file-string-weight", "predict", [*PREDICT, "decode.config_file={string_weight_config}"], ['string_weight.config:1: rm_weight="1.5" must be a finite number']),
    Case("predict-config-file-topk-0", "predict", [*PREDICT, "decode.config_file={topk0_config}"], ["topk0.config:2: topk must be an integer in [1, vocabulary], got 0"]),
    # ---- plans, files, directories and endpoints that cannot work (issue 19)
    Case("pipeline-unknown-step-reference", "pipeline", ["recipe=tiny_pipeline", "+pipeline.predict.extra='decode=greedy policy=@sfd'"], ["pipeline step 'predict extra' refers to @sfd", "pipeline.fit has no step 'sfd'", "add it to pipeline.fit"]),
    Case("pipeline-evaluate-only", "pipeline", ["recipe={eval_only_pipeline}"], ["pipeline step 'evaluate' (tiny_eval) has nothing to evaluate", "add a predict step"]),
    Case("pipeline-broken-quoting", "pipeline", ["recipe=tiny_pipeline", "pipeline.fit.ppo=\"tiny_ppo policy='@sft\""], ["pipeline step 'ppo': cannot split", "no closing quotation", "check its quotes"]),
    Case("export-config-of-predict-run", "export", ["{garbage_ckpt}", "{run}", "--config", "{predict_config}"], ["is the config of a predict run", "pass --config <fit run_dir>/config.yaml"]),
    Case("export-config-not-yaml", "export", ["{garbage_ckpt}", "{run}", "--config", "{bad_yaml}"], ["bad.yaml is not valid YAML", "pass --config"]),
    Case("predict-config-json-not-json", "predict", [*PREDICT, "policy={bad_config_json}"], ["config.json' is not valid JSON", "re-export it"]),
    Case("fit-config-json-not-json", "fit", ["recipe=tiny_sft", "policy={bad_config_json}"], ["config.json' is not valid JSON", "re-export it"]),
    Case("fit-run-dir-is-a-file", "fit", ["recipe=tiny_sft", "run_dir={garbage_ckpt}", "logger.name=none"], ["is a file, not a directory", "set run_dir="], plain=True),
    Case("predict-run-dir-under-a-file", "predict", [*PREDICT, "run_dir={garbage_ckpt}/run", "logger.name=none"], ["cannot be created", "garbage.ckpt is a file", "set run_dir="], plain=True),
    Case("fit-ckpt-path-not-a-checkpoint", "fit", ["recipe=tiny_sft", "ckpt_path={garbage_ckpt}"], ["is not a Lightning checkpoint", "pass a .ckpt file"]),
    Case("fit-ckpt-path-torch-file", "fit", ["recipe=tiny_sft", "ckpt_path={state_dict_file}"], ["is a torch file but not a Lightning checkpoint", "pass a .ckpt file"]),
    Case("fit-header-only-recipe", "fit", ["recipe={header_only_recipe}"], ["recipe 'header_only' sets no stage", "add a line 'stage: NAME'"]),
    Case("evaluate-judge-unreachable", "evaluate", ["outputs=['a={done_run}','b={done_run_b}']", "eval.metrics=[cost]", "eval.judge.enabled=true", "eval.judge.baseline=b", "eval.judge.base_url=http://127.0.0.1:{closed_port}/v1"], ["judge endpoint http://127.0.0.1:", "is unreachable (Connection refused)", "start the server"]),
    # ---- token-level reward models: predict and fit (formerly in test_predict_token_level.py, test_token_rm_fit.py)
    Case("predict-genarm-sequence-rm", "predict", [*GENARM, "reward_model={rm}"], ["decode.method=genarm needs an autoregressive"]),
    Case("predict-token-rm-sequence-rm", "predict", [*TOKEN_RM, "reward_model={rm}"], ["needs a token-level reward model"]),
    Case("predict-args-token-rm", "predict", [*PREDICT, "reward_model={token_rm}"], ["decode.method=args-greedy needs a sequence reward model"]),
    Case("predict-genarm-token-rm", "predict", [*GENARM, "reward_model={token_rm}"], ["reward model is reward_kind 'token'"]),
    Case("predict-token-rm-other-vocab", "predict", [*TOKEN_RM, "reward_model={other_vocab_rm}"], ["has a vocabulary of"]),
    Case("predict-genarm-alpha-nan", "predict", [*GENARM, "decode.alpha=nan"], ["decode.alpha must be a finite number, got nan"]),
    Case("predict-token-rm-weight-inf", "predict", [*TOKEN_RM, "decode.weight=inf"], ["decode.weight must be a finite number, got inf"]),
    Case("fit-arm-rm-as-policy", "fit", ["recipe=tiny_arm", "policy={rm}"], ["is a sequence classifier"]),
    Case("fit-token-rm-rm-as-policy", "fit", ["recipe=tiny_token_rm", "policy={rm}"], ["is a sequence classifier"]),
    Case("fit-arm-missing-policy", "fit", ["recipe=tiny_arm", "policy={missing}/sft"], ["policy path", "does not exist"]),
    Case("fit-arm-beta-0", "fit", ["recipe=tiny_arm", "arm.beta=0"], ["arm.beta=0.0 must be a finite number > 0"]),
    Case("fit-arm-beta-nan", "fit", ["recipe=tiny_arm", "arm.beta=nan"], ["arm.beta=nan must be a finite number > 0"]),
    Case("fit-token-rm-consistency-negative", "fit", ["recipe=tiny_token_rm", "token_rm.consistency_weight=-1"], ["token_rm.consistency_weight=-1.0"]),
    Case("fit-token-rm-bad-schedule", "fit", ["recipe=tiny_token_rm", "token_rm.schedule=both"], ["token_rm.schedule='both'"]),
    Case("fit-token-rm-distill-without-teacher", "fit", ["recipe=tiny_token_rm", "token_rm.mode=distill"], ["needs token_rm.teacher_rm="]),
    Case("fit-distill-teacher-is-lm", "fit", ["recipe=tiny_token_rm_distill", "policy={policy}", "token_rm.teacher_rm={policy}"], ["is not a sequence reward model"]),
    Case("fit-distill-teacher-no-config", "fit", ["recipe=tiny_token_rm_distill", "policy={policy}", "token_rm.teacher_rm={empty_dir}"], ["holds no config.json"]),
    Case("fit-distill-teacher-other-tokenizer", "fit", ["recipe=tiny_token_rm_distill", "policy={policy}", "token_rm.teacher_rm={other_tok_rm}"], ["does not share the policy's tokenizer"]),
    Case("fit-distill-topk-1", "fit", ["recipe=tiny_token_rm_distill", "token_rm.distill_topk=1"], ["token_rm.distill_topk=1 must be"]),
    # ---- the next methods (DPO, value model + controlled decoding, soft / speculative best-of-N)
    Case("fit-dpo-beta-0", "fit", ["recipe=tiny_dpo", "dpo.beta=0"], ["dpo.beta=0.0 must be a finite number > 0"]),
    Case("fit-dpo-rm-as-policy", "fit", ["recipe=tiny_dpo", "policy={rm}"], ["is a sequence classifier"]),
    Case("fit-value-without-rm", "fit", ["recipe=tiny_value", "policy={policy}", "reward_model=null"], ["stage value needs reward_model="]),
    Case("fit-value-missing-rm", "fit", ["recipe=tiny_value", "policy={policy}", "reward_model={missing}/rm"], ["reward model path", "does not exist"]),
    Case("fit-value-lm-as-rm", "fit", ["recipe=tiny_value", "policy={policy}", "reward_model={policy}"], ["reward model"]),
    Case("predict-soft-lambda-0", "predict", [*PREDICT, "decode=soft_best_of_n", "decode.reward_temperature=0"], ["decode.reward_temperature must be a number > 0"]),
    Case("predict-speculative-rate-1", "predict", [*PREDICT, "decode=speculative_best_of_n", "decode.rejection_rate=1"], ["decode.rejection_rate must be a number in [0, 1), got 1.0"]),
    Case("predict-cd-block-0", "predict", [*PREDICT, "decode=cd_blockwise", "decode.block_size=0"], ["decode.block_size must be an integer >= 1, got 0"]),
    Case("predict-cd-arm", "predict", [*PREDICT, "decode=cd_blockwise", "reward_model={arm}"], ["decode.method=cd-blockwise needs a value model"]),
    Case("predict-own-method-not-importable", "predict", [*PREDICT, "decode=no_such_pkg.mod:METHOD"], ["cannot import no_such_pkg", "add its folder to PYTHONPATH"]),
    Case("fit-own-stage-not-importable", "fit", ["recipe=tiny_sft", "stage=no_such_pkg.mod:STAGE"], ["cannot import no_such_pkg"]),
    # ---- sequence reward models that cannot guide (formerly in test_encoder_rm.py)
    Case("predict-rm-two-labels", "predict", [*PREDICT, "reward_model={two_label_rm}"], ["num_labels=2"]),
    Case("predict-rm-without-score-head", "predict", [*PREDICT, "reward_model={headless_rm}"], ["lacks score.weight", "would be initialised at random"]),
    Case("predict-rm-context-too-short", "predict", [*PREDICT, "reward_model={short_ctx_rm}", "decode.max_new_tokens=4", "predict.too_long=error"], ["reward model's context is 8"]),
    Case("predict-unknown-scorer", "predict", [*PREDICT, "decode.scorer=fast"], ["decode.scorer must be one of auto, tree, expanded, full, got 'fast'"]),
    # ---- real-model options (issue 21): prompt format, shards, top-layer training
    Case("fit-unknown-prompt-format", "fit", ["recipe=tiny_sft", "data.prompt_format=html"], ["unknown data.prompt_format 'html'", "choose one of raw, chat"]),
    Case("fit-bad-shard", "fit", ["recipe=tiny_rm", "data.shard=[0.5,0.2]"], ["data.shard must be [lo, hi] with 0 <= lo < hi <= 1"]),
    Case("fit-cache-frozen-without-top-layers", "fit", ["recipe=tiny_rm", "model.cache_frozen=true"], ["model.cache_frozen=true caches the frozen layers' outputs", "set model.train_top_layers=N"]),
    Case("fit-cache-frozen-stage-without-cache", "fit", ["recipe=tiny_sft", "model.train_top_layers=1", "model.cache_frozen=true"], ["stage sft does not read cached features", "rm, dpo, arm", "model.cache_frozen=false"]),
    Case("fit-top-layers-and-lora", "fit", ["recipe=tiny_rm", "model.train_top_layers=1", "model.lora.enabled=true"], ["model.train_top_layers and model.lora.enabled", "pass one"]),
    Case("fit-top-layers-too-many", "fit", ["recipe=tiny_rm", "model.train_top_layers=99"], ["model.train_top_layers=99 but", "choose 1.."]),
    Case("predict-chat-without-template", "predict", [*PREDICT, "data.prompt_format=chat"], ["data.prompt_format=chat needs a tokenizer with a chat template", "use data.prompt_format=raw"]),
]  # fmt: skip

# Open lock files of `world`'s locked_run, held for the module: flock conflicts between two
# open files even in one process, so the in-process rows see the run dir in use.
_HELD_LOCKS: list = []


def _write_world(root: Path, kit: dict[str, Path]) -> dict[str, Path]:
    """The inputs the cases point at: good tiny models, broken copies, runs and data files."""
    from argsfw.config.compose import compose, to_yaml

    world = {"policy": kit["policy"], "rm": kit["reward_model"], "missing": root / "missing"}
    truncated = shutil.copytree(kit["policy"], root / "truncated")
    weights = truncated / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    no_tok = shutil.copytree(kit["policy"], root / "no_tokenizer")
    for f in no_tok.glob("tokenizer*"):
        f.unlink()
    data = root / "data"
    data.mkdir()
    pair = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello",
        "rejected": "\n\nHuman: hi\n\nAssistant: no",
    }
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text(json.dumps(pair) + "\n")
    empty = root / "empty_prompts.jsonl"
    empty.write_text(
        "".join(json.dumps({"prompt": "", "chosen": "a", "rejected": "b"}) + "\n" for _ in range(3))
    )
    no_prompts = root / "no_prompts.jsonl"
    no_prompts.write_text('{"chosen": "", "rejected": ""}\n{"chosen": " ", "rejected": " "}\n')
    runs = {}
    for name, done in (("done_run", True), ("partial_run", False)):
        d = root / name
        d.mkdir()
        (d / "outputs.jsonl").write_text(
            json.dumps({"id": "a", "prompt": "p", "result": "r"}) + "\n"
        )
        (d / "config.yaml").write_text("decode:\n  method: greedy\n")
        (d / "meta.json").write_text('{"status": "partial"}')
        if done:
            (d / "DONE").write_text("")
        runs[name] = d
    used_run = root / "used_run"
    used_run.mkdir()
    (used_run / "config.yaml").write_text("stage: sft\n")
    (used_run / "meta.json").write_text('{"status": "failed"}')
    import fcntl

    locked = root / "locked_run"
    locked.mkdir()
    lock = (locked / ".argsfw.lock").open("a+")
    lock.write("argsfw pid 12345 on elsewhere\n")
    lock.flush()
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD_LOCKS.append(lock)
    rm_run = root / "rm_run"
    rm_run.mkdir()
    (rm_run / "config.yaml").write_text("stage: rm\n")
    (rm_run / "meta.json").write_text('{"stage": "rm", "recipe": "tiny_rm", "status": "completed"}')
    used_dir = root / "used_dir"
    used_dir.mkdir()
    (used_dir / "notes.txt").write_text("not a model")
    (root / "empty_dir").mkdir()
    garbage = root / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    sft_config = root / "sft_config.yaml"
    sft_config.write_text(to_yaml(compose(["recipe=tiny_sft"])))
    return {
        **world, **runs, "truncated": truncated, "no_tokenizer": no_tok, "data_dir": data,
        **_write_world_19(root, kit, runs["done_run"]),
        "empty_prompts": empty, "no_prompts": no_prompts, "used_run": used_run,
        "used_dir": used_dir, "empty_dir": root / "empty_dir", "garbage_ckpt": garbage,
        "sft_config": sft_config, "locked_run": locked, "rm_run": rm_run,
    }  # fmt: skip


def _write_world_19(root: Path, kit: dict[str, Path], done_run: Path) -> dict[str, object]:
    """The inputs of issue 19's rows: config files, recipes, a broken config.json, a closed port."""
    import socket

    from argsfw.config.compose import compose, to_yaml

    files = {
        "string_weight_config": (
            "string_weight.config",
            '{"rm_weight": "1.5", "topk": 10, "mode": "greedy"}\n',
        ),
        "topk0_config": ("topk0.config", '{"rm_weight": 1.0}\n{"rm_weight": 1.0, "topk": 0}\n'),
        "bad_yaml": ("bad.yaml", "stage: sft\noptim: [lr: 1\n"),
        "predict_config": ("predict_config.yaml", to_yaml(compose(["recipe=tiny_args"]))),
        "header_only_recipe": ("header_only.yaml", "# @package _global_\n"),
        "eval_only_pipeline": (
            "eval_only.yaml",
            "# @package _global_\nstage: pipeline\n"
            "pipeline:\n  fit:\n    sft: tiny_sft\n  evaluate: tiny_eval\n",
        ),
    }
    out: dict[str, object] = {}
    for key, (name, text) in files.items():
        out[key] = root / name
        out[key].write_text(text)
    import torch

    out["state_dict_file"] = root / "weights.pt"  # torch.save of a bare state dict
    torch.save({"w": torch.zeros(2)}, out["state_dict_file"])
    bad_json = shutil.copytree(kit["policy"], root / "bad_config_json")
    (bad_json / "config.json").write_text('{"model_type": "llama",')
    out["bad_config_json"] = bad_json
    out["done_run_b"] = shutil.copytree(done_run, root / "done_run_b")
    with socket.socket() as s:  # a loopback port nothing listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        out["closed_port"] = s.getsockname()[1]
    return out


def _write_reward_models(
    root: Path, kit: dict[str, Path], token_kit: dict[str, Path], texts: list[str]
) -> dict[str, Path]:
    """Reward models that cannot serve: token-level ones, another tokenizer's, broken sequence RMs."""
    import json as _json

    from transformers import AutoConfig, AutoModelForSequenceClassification

    from argsfw.models import load_reward_model, load_tokenizer, make_tiny_kit

    tok = load_tokenizer(kit["reward_model"])
    out = {"arm": token_kit["arm"], "token_rm": token_kit["token"]}
    out["other_vocab_rm"] = token_kit["other_vocab"]
    out["other_tok_rm"] = make_tiny_kit(root / "other", texts[:50], vocab_size=300)["reward_model"]
    config = AutoConfig.from_pretrained(kit["reward_model"], num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(root / "two_label_rm")
    tok.save_pretrained(root / "two_label_rm")
    out["two_label_rm"] = root / "two_label_rm"
    # a causal LM's weights under a classifier's config: no trained score head
    headless = shutil.copytree(kit["policy"], root / "headless_rm")
    config = _json.loads((headless / "config.json").read_text())
    config.update(architectures=["LlamaForSequenceClassification"], num_labels=1)
    config.pop("id2label", None), config.pop("label2id", None)
    (headless / "config.json").write_text(_json.dumps(config))
    out["headless_rm"] = headless
    short = load_reward_model(kit["reward_model"])
    short.config.max_position_embeddings = 8
    short.save_pretrained(root / "short_ctx_rm")
    tok.save_pretrained(root / "short_ctx_rm")
    out["short_ctx_rm"] = root / "short_ctx_rm"
    return out


def _command(case: Case, world: dict[str, Path], run: Path) -> list[str]:
    paths = {k: str(v) for k, v in world.items()} | {"run": str(run)}
    args = [a.format(**paths) for a in case.args]
    if case.entry != "export" and not case.plain:
        args += [f"run_dir={run}", "logger.name=none"]
    return args


@dataclass
class Outcome:
    """What one case printed and returned."""

    returncode: int
    stdout: str
    stderr: str
    run: Path


def _in_process(case: Case, world: dict[str, Path], root: Path, monkeypatch) -> Outcome:
    """``argsfw.<entry>.main(args)`` in this process: the same code as ``python -m``, without
    paying the interpreter start and the imports (~4 s of CPU) once per row."""
    import importlib

    run = root / "runs" / case.id
    main = importlib.import_module(f"argsfw.{case.entry}").main
    out, err = io.StringIO(), io.StringIO()
    with monkeypatch.context() as m:
        for key, value in case.env.items():
            m.setenv(key, value)
        if case.env.get("CUDA_VISIBLE_DEVICES") == "":  # what hiding every GPU does to torch
            import torch

            m.setattr(torch.cuda, "device_count", lambda: 0)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(_command(case, world, run))
            except SystemExit as exc:  # argparse (export) exits on bad arguments
                code = exc.code
    return Outcome(code, out.getvalue(), err.getvalue(), run)


def _subprocess(case: Case, world: dict[str, Path], root: Path) -> Outcome:
    run = root / "processes" / case.id
    proc = run_module(
        case.entry, *_command(case, world, run), timeout=300, check=False, env_extra=case.env
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, run)


@pytest.fixture(scope="module")
def world(tiny_kit, token_kit, tiny_texts, tmp_path_factory) -> tuple[dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    rms = _write_reward_models(root, tiny_kit, token_kit, tiny_texts)
    return {**_write_world(root, tiny_kit), **rms}, root


@pytest.fixture(scope="module")
def results(world) -> dict[str, Outcome]:
    """Every case run once in this process: ``{case id: Outcome}``."""
    paths, root = world
    with pytest.MonkeyPatch.context() as monkeypatch:
        done = {c.id: _in_process(c, paths, root, monkeypatch) for c in CASES}
    if os.environ.get("ARGSFW_BAD_INPUTS_TABLE"):  # the table as markdown, for the docs
        _write_table(Path(os.environ["ARGSFW_BAD_INPUTS_TABLE"]), done, paths, root)
    return done


def _write_table(path: Path, done: dict[str, Outcome], world: dict[str, Path], root: Path):
    rows = ["| case | command | exit | message |", "|---|---|---:|---|"]
    for case in CASES:
        o = done[case.id]
        base = str(root.parent)  # pytest's temporary directory: the kit and the world
        args = " ".join(_command(case, world, o.run)).replace(base, "$TMP")
        last = [line for line in o.stderr.splitlines() if line.strip()][-1:] or [""]
        msg = last[0].replace(base, "$TMP").replace("|", "\\|")
        rows.append(f"| {case.id} | `argsfw.{case.entry} {args}` | {o.returncode} | {msg} |")
    path.write_text("\n".join(rows) + "\n")


def test_the_table_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert {c.entry for c in CASES} == {"fit", "predict", "evaluate", "export", "pipeline"}


def _looks_complete(path: Path) -> list[str]:
    if not path.exists():
        return []
    found = [str(p) for p in path.rglob("*") if p.name in ("DONE", "report.json") or p.name == "hf"]
    for meta in path.rglob("meta.json"):
        if json.loads(meta.read_text() or "{}").get("status") == "completed":
            found.append(str(meta))
    return found


def _assert_contract(case: Case, o: Outcome) -> None:
    out = o.stdout + o.stderr
    assert o.returncode == 2, f"exit {o.returncode}:\n{o.stderr[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in o.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"argsfw {case.entry}: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], o.stderr[-3000:]
    message = errors[0]
    for text in case.expect:
        assert text in message, f"{text!r} not in {message!r}"
    assert FIX.search(message.split(": error: ", 1)[1]), f"no fix proposed in {message!r}"
    assert not _looks_complete(o.run), _looks_complete(o.run)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_at_once_in_one_line(case: Case, results):
    _assert_contract(case, results[case.id])


# One row per entry point again as a real ``python -m`` process: the exit status the shell
# sees, and nothing printed at import or interpreter exit (warnings, tracebacks) in between.
PROCESS_CASES = [
    "fit-no-gpu", "predict-rm-as-policy", "evaluate-one-path-missing", "export-out-dir-not-empty",
    "pipeline-bad-fit-override", "fit-ckpt-path-not-a-checkpoint", "evaluate-judge-unreachable",
]  # fmt: skip


def test_bad_input_as_a_process(world):
    paths, root = world
    cases = [c for c in CASES if c.id in PROCESS_CASES]
    assert len(cases) == len(PROCESS_CASES)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda c: _subprocess(c, paths, root), cases))
    for case, outcome in zip(cases, outcomes):
        _assert_contract(case, outcome)
