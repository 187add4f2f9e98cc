"""What kind of reward model a checkpoint is: a sequence classifier, or a token-level causal LM.

Decoding methods need different reward models:

- ``"sequence"``: a scalar reward of a whole sequence (``AutoModelForSequenceClassification``,
  ``num_labels=1``), read by ARGS and best-of-n;
- ``"arm"``: an autoregressive RM (GenARM), a causal LM whose response log-likelihood is the
  reward, ``r(x, y) = sum_t log pi_r(y_t | x, y_<t)``, read by ``genarm``;
- ``"token"``: a causal LM whose vocabulary head holds the reward of every candidate next token,
  ``r(x, y_<t, v) = head(x, y_<t)[v]`` (FaRMA-style, or distilled from a sequence RM), read by
  ``token-rm``;
- ``"implicit"``: a DPO run, read with its reference as the token-level implicit reward
  ``beta * (log pi_dpo - log pi_ref)`` (`argsfw.decoding.implicit`), read by ``treebon`` and,
  like a token-level head, by ``token-rm`` and ``genarm``.

argsfw's fit stages mark token-level RMs twice: ``"reward_kind"`` in the run's ``meta.json``
beside the weights and the attribute ``argsfw_reward_kind`` in ``config.json``. An unmarked
``*ForSequenceClassification`` checkpoint is a sequence RM; an unmarked causal LM is ``None``
(a user's own model: the token-level methods accept it and log that its kind is unmarked); a
DPO stage's export (its ``meta.json`` says ``stage: dpo``) is ``"implicit"``. Reading a kind
opens JSON files only, so predict can refuse a mismatch before any model loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

KINDS = ("sequence", "arm", "token", "value", "implicit")
CONFIG_ATTR = "argsfw_reward_kind"
META_KEY = "reward_kind"


def is_dpo_export(meta: dict) -> bool:
    """True when a run's ``meta.json`` is a DPO stage's (its export is an implicit-reward guide)."""
    return meta.get("stage") == "dpo" or "dpo_beta" in meta


def _from_config(config) -> str | None:
    """The kind a config object or dict declares: its marker, else its architectures."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    marker = get(CONFIG_ATTR)
    if marker in KINDS:
        return marker
    archs = get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in archs):
        return "sequence"
    return None


def reward_kind(path_or_config) -> str | None:
    """One of `KINDS` or None (an unmarked causal LM or unknown).

    ``path_or_config``: a model directory (its ``config.json`` and ``meta.json`` are read), a
    transformers config, or a config dict. The ``config.json`` marker wins over ``meta.json``;
    both win over the architecture name; a DPO run's export is ``"implicit"``.
    """
    if not isinstance(path_or_config, (str, os.PathLike)):
        return _from_config(path_or_config)
    d = Path(path_or_config)
    config = _read_json(d / "config.json")
    if config.get(CONFIG_ATTR) in KINDS:
        return config[CONFIG_ATTR]
    meta = _read_json(d / "meta.json")
    if meta.get(META_KEY) in KINDS:
        return meta[META_KEY]
    if is_dpo_export(meta):
        return "implicit"
    return _from_config(config)


def is_causal_lm_config(path_or_config) -> bool:
    """True when the checkpoint's architectures name a ``*ForCausalLM`` (or a marker says token-level)."""
    if isinstance(path_or_config, (str, os.PathLike)):
        config = _read_json(Path(path_or_config) / "config.json")
    elif isinstance(path_or_config, dict):
        config = path_or_config
    else:
        config = {
            "architectures": getattr(path_or_config, "architectures", None),
            CONFIG_ATTR: getattr(path_or_config, CONFIG_ATTR, None),
        }
    if config.get(CONFIG_ATTR) in ("arm", "token", "implicit"):
        return True
    return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])


def kind_error(method, kind: str | None) -> str | None:
    """The one-line reason ``method`` (a registry `Method`) cannot use a reward model of ``kind``,
    or None when it can.

    ``kind`` is `reward_kind`'s answer, with ``None`` meaning an unmarked causal LM (accepted by
    the token-level methods). DPO's implicit reward (``"implicit"``) serves the token-level
    methods as well as those that need it.
    """
    from argsfw.decoding.registry import methods

    want = "sequence" if method.needs == "value" else method.needs
    # a value model V(x, y_<=t) is a sequence classifier read on prefixes: it serves every
    # method that reads a sequence RM (on prefixes: controlled decoding, ARGS as CD-Q)
    kind_read = "sequence" if kind == "value" else kind
    if kind_read == want or (kind is None and want in ("arm", "token")):
        return None
    if kind == "implicit" and want in ("arm", "token"):
        return None
    hint = {
        "sequence": "a sequence reward model (AutoModelForSequenceClassification, e.g. recipe=tiny_rm)",
        "arm": "an autoregressive reward model (reward_kind 'arm', e.g. recipe=tiny_arm)",
        "token": "a token-level reward model (reward_kind 'token', e.g. recipe=tiny_token_rm_distill)",
        "value": "a value model (reward_kind 'value', e.g. recipe=tiny_value) or a sequence reward model",
        "implicit": "a DPO run (its policy and reference give the implicit reward, e.g. recipe=tiny_dpo)",
    }

    def fix(k: str) -> str:
        return " / ".join(m.name for n, m in methods().items() if m.needs == k and n == m.name)

    got = "an unmarked causal LM" if kind is None else f"reward_kind '{kind}'"
    return (
        f"decode.method={method.name} needs {hint[method.needs if method.needs == 'value' else want]}, but the reward model is {got}; "
        f"pass a matching reward_model or use decode.method="
        f"{fix(kind) if kind else fix('arm') + ' / ' + fix('token')}"
    )


def load_token_reward_model(spec, dtype="float32", device: str | None = None):
    """Load a token-level reward model (a causal LM: GenARM's ARM or a token-level head) in eval mode.

    A kind marked only in ``meta.json`` is copied onto ``model.config`` (``argsfw_reward_kind``),
    so the decoding engine, which sees the model alone, knows it too. (A DPO run, kind
    ``"implicit"``, loads with its reference: `argsfw.decoding.implicit.load_token_guide`.)
    """
    from transformers import AutoModelForCausalLM

    from argsfw.models.loading import parse_dtype, resolve_model_path

    path = resolve_model_path(spec, "reward model")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=parse_dtype(dtype))
    kind = reward_kind(path) if Path(path).is_dir() else None
    if kind in ("arm", "token"):
        model.config.argsfw_reward_kind = kind
    if device is not None:
        model = model.to(device)
    return model.eval()


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}
