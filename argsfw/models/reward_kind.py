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
  ``beta * (log pi_dpo - log pi_ref)`` (`argsfw.decoding.implicit`), read by TreeBoN and, like a
  token-level head, by ``token-rm`` and ``genarm``.

argsfw's fit stages mark token-level RMs twice: ``"reward_kind"`` in the run's ``meta.json``
beside the weights and the attribute ``argsfw_reward_kind`` in ``config.json``. An unmarked
``*ForSequenceClassification`` checkpoint is a sequence RM; an unmarked causal LM is ``None``
(a user's own model: the token-level methods accept it and log that its kind is unmarked); a
DPO run's export (its ``meta.json`` holds the DPO ``dpo_beta``) is ``"implicit"``. Reading a
kind opens JSON files only, so predict can refuse a mismatch before any model loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from argsfw.decoding.types import RewardKind

KINDS = tuple(k.value for k in RewardKind)
CONFIG_ATTR = "argsfw_reward_kind"
META_KEY = "reward_kind"


def mark_reward_kind(model, kind: RewardKind | str) -> None:
    """Record `kind` in the model's config (saved into config.json as ``argsfw_reward_kind``);
    a peft wrapper's base model is the one marked."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    setattr(base.config, CONFIG_ATTR, RewardKind(kind).value)


def is_dpo_export(meta: dict) -> bool:
    """True when a run's ``meta.json`` is a DPO fit's (it records the DPO ``dpo_beta``): its export
    is a policy whose log-ratio to its reference is an implicit-reward guide."""
    return "dpo_beta" in meta


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
        return RewardKind.IMPLICIT.value
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
    if config.get(CONFIG_ATTR) in KINDS and RewardKind(config[CONFIG_ATTR]).causal_lm:
        return True
    return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])


_WHAT = {
    RewardKind.SEQUENCE: "a sequence reward model (AutoModelForSequenceClassification",
    RewardKind.ARM: "an autoregressive reward model (reward_kind 'arm'",
    RewardKind.TOKEN: "a token-level reward model (reward_kind 'token'",
    RewardKind.VALUE: "a value model (reward_kind 'value'",
    RewardKind.IMPLICIT: "a DPO run (its policy and reference give the implicit reward, e.g. recipe=tiny_dpo",
}


def kind_error(method, kind: str | None) -> str | None:
    """The one-line reason ``method`` (a registry `Method`) cannot use a reward model of ``kind``,
    or None when it can.

    ``kind`` is `reward_kind`'s answer, with ``None`` meaning an unmarked causal LM (accepted by
    the methods that read a token head). DPO's implicit reward serves those methods as well as
    the ones that need it. The hint names the stage that makes the kind needed
    (`argsfw.stages.maker`) and the methods that read the kind given.
    """
    from argsfw.decoding.registry import methods
    from argsfw.stages import maker

    need = RewardKind(method.needs)
    # a value model V(x, y_<=t) is a sequence classifier read on prefixes: it serves every
    # method that reads a sequence RM (on prefixes: controlled decoding, ARGS as CD-Q)
    want, got = need.read_as, RewardKind(kind).read_as if kind else None
    if got is want or (want.token_head and got in (None, RewardKind.IMPLICIT)):
        return None
    stage = maker(f"reward_model:{need.value}")
    what = _WHAT[need] + (f", e.g. recipe=tiny_{stage.name})" if stage else ")")
    if need is RewardKind.VALUE:
        what += " or a sequence reward model"

    def fix(k: RewardKind) -> str:
        return " / ".join(m.name for n, m in methods().items() if m.needs == k and n == m.name)

    heads = [k for k in RewardKind if k.token_head]
    uses = fix(RewardKind(kind)) if kind else " / ".join(fix(k) for k in heads)
    given = "an unmarked causal LM" if kind is None else f"reward_kind '{kind}'"
    return (
        f"decode.method={method.name} needs {what}, but the reward model is {given}; "
        f"pass a matching reward_model or use decode.method={uses}"
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
    if kind is not None and RewardKind(kind).causal_lm:
        mark_reward_kind(model, kind)
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
