"""Tiny models and tokenizers built from a config, for tests, CPU recipes and benchmarks.

Everything here is deterministic from a seed and needs no network: the tokenizer is a
byte-level BPE trained in-process with `tokenizers`, the models are random-initialised
`transformers` architectures (Llama or OPT) saved as ordinary Hugging Face directories.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    LlamaConfig,
    OPTConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}
ARCHS = ("llama", "opt")


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model. Defaults give ~0.4M non-embedding parameters (fast on a CPU)."""

    arch: str = "llama"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 512


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it as a `PreTrainedTokenizerFast`.

    The tokenizer adds a BOS token to every sequence (like Llama's), has pad/eos/unk tokens,
    and round-trips any text (byte-level). Training is deterministic for the same texts.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def _config(spec: TinySpec, tokenizer: PreTrainedTokenizerFast, **extra) -> PretrainedConfig:
    ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        max_position_embeddings=spec.max_position_embeddings,
        **extra,
    )
    if spec.arch == "llama":
        return LlamaConfig(
            hidden_size=spec.hidden_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads,
            intermediate_size=spec.intermediate_size,
            tie_word_embeddings=False,
            **ids,
        )
    if spec.arch == "opt":
        return OPTConfig(
            hidden_size=spec.hidden_size,
            word_embed_proj_dim=spec.hidden_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            ffn_dim=spec.intermediate_size,
            dropout=0.0,
            attention_dropout=0.0,
            **ids,
        )
    raise ValueError(f"unknown tiny architecture {spec.arch!r}; choose one of {ARCHS}")


def build_tiny_policy(
    tokenizer: PreTrainedTokenizerFast, spec: TinySpec = TinySpec(), seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised causal LM sized by `spec`, deterministic from `seed`."""
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(_config(spec, tokenizer)).eval()


def build_tiny_reward_model(
    tokenizer: PreTrainedTokenizerFast, spec: TinySpec = TinySpec(), seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised `AutoModelForSequenceClassification` with `num_labels=1`.

    The pad token id is set so the model scores the last non-pad token of each row.
    """
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(
        _config(spec, tokenizer, num_labels=1)
    ).eval()


def build_tiny_token_reward_model(
    tokenizer: PreTrainedTokenizerFast,
    spec: TinySpec = TinySpec(),
    seed: int = 0,
    kind: str = "token",
) -> PreTrainedModel:
    """A randomly initialised causal LM marked as a token-level RM (``kind`` "arm" or "token").

    The marker is the config attribute ``argsfw_reward_kind`` (see `argsfw.models.reward_kind`),
    so it is saved in ``config.json`` with the weights.
    """
    from argsfw.models.reward_kind import mark_reward_kind

    model = build_tiny_policy(tokenizer, spec, seed)
    mark_reward_kind(model, kind)
    return model


def save_hf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, out_dir: str | Path
) -> Path:
    """Save `model` and `tokenizer` as one plain Hugging Face directory (safetensors)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_tiny_kit(
    out_dir: str | Path,
    texts: Iterable[str],
    spec: TinySpec = TinySpec(),
    rm_spec: TinySpec | None = None,
    vocab_size: int = 2048,
    seed: int = 0,
) -> dict[str, Path]:
    """Train a tokenizer on `texts`, build a tiny policy and RM, save them under `out_dir`.

    Returns ``{"policy": out_dir/"policy", "reward_model": out_dir/"reward_model"}``, both
    loadable with vanilla `transformers` (`AutoModelForCausalLM`,
    `AutoModelForSequenceClassification`) and sharing one tokenizer.
    """
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    out = Path(out_dir)
    return {
        "policy": save_hf(build_tiny_policy(tokenizer, spec, seed), tokenizer, out / "policy"),
        "reward_model": save_hf(
            build_tiny_reward_model(tokenizer, rm_spec or spec, seed + 1),
            tokenizer,
            out / "reward_model",
        ),
    }
