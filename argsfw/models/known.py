"""Architectures of the hub models the shipped recipes name, to check recipes offline.

A recipe for Llama-7B or OPT-2.7b must be checkable on a machine with no GPU and no hub
access: we build its model on the meta device (no memory, no weights) from the architecture
below when the real ``config.json`` cannot be read. The values are the published configs of
these checkpoints; with hub access the real config is used instead.
"""

from __future__ import annotations

import os

import torch

_OPT = dict(
    model_type="opt",
    vocab_size=50272,
    max_position_embeddings=2048,
    do_layer_norm_before=True,
    pad_token_id=1,
    bos_token_id=2,
    eos_token_id=2,
)
_LLAMA7B = dict(
    model_type="llama",
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)
KNOWN_ARCHITECTURES: dict[str, dict] = {
    "facebook/opt-125m": {
        **_OPT,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "ffn_dim": 3072,
        "word_embed_proj_dim": 768,
    },
    "facebook/opt-350m": {
        **_OPT,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "ffn_dim": 4096,
        "word_embed_proj_dim": 512,
        "do_layer_norm_before": False,
    },
    "facebook/opt-1.3b": {
        **_OPT,
        "hidden_size": 2048,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "ffn_dim": 8192,
        "word_embed_proj_dim": 2048,
    },
    "facebook/opt-2.7b": {
        **_OPT,
        "hidden_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "ffn_dim": 10240,
        "word_embed_proj_dim": 2560,
    },
    "huggyllama/llama-7b": _LLAMA7B,
    "argsearch/llama-7b-sft-float32": _LLAMA7B,
    "argsearch/llama-7b-rm-float32": _LLAMA7B,
}


def model_config(spec: str, num_labels: int | None = None):
    """The `PretrainedConfig` of a model input: read from disk/cache, else from the table above.

    Raises `KeyError` when the model is neither readable nor a known architecture.
    """
    from transformers import CONFIG_MAPPING, AutoConfig

    extra = {"num_labels": num_labels} if num_labels else {}
    if os.path.isdir(spec) or spec not in KNOWN_ARCHITECTURES:
        from argsfw.models.paths import resolve_model_path

        return AutoConfig.from_pretrained(resolve_model_path(spec), **extra)
    kwargs = dict(KNOWN_ARCHITECTURES[spec])
    return CONFIG_MAPPING[kwargs.pop("model_type")](**kwargs, **extra)


def build_on_meta(spec: str, reward: bool = False):
    """Instantiate the model named by `spec` on the meta device (no memory used).

    `reward=True` builds the `AutoModelForSequenceClassification` head with one label.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = model_config(spec, num_labels=1 if reward else None)
    auto = AutoModelForSequenceClassification if reward else AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)
