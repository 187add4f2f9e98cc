"""Tiny random models of many transformers families, and WordPiece tokenizers for encoders.

For tests and benchmarks that must show argsfw works beyond Llama and OPT: every decoder family
here builds as a policy (`AutoModelForCausalLM`) and a reward model
(`AutoModelForSequenceClassification`, one label) with hidden size 32, 2 layers and 2 heads;
every encoder family builds as a reward model over its own WordPiece vocabulary. Nothing is
downloaded: configs come from `transformers.AutoConfig.for_model`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

# family -> (transformers model_type, config keys beyond the shared tiny shape)
DECODER_FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("llama", {}),
    "mistral": ("mistral", {}),
    "qwen2": ("qwen2", {}),
    "qwen3": ("qwen3", {"head_dim": 16}),
    "gemma": ("gemma", {"head_dim": 16}),
    "gemma2": ("gemma2", {"head_dim": 16}),
    "phi3": ("phi3", {}),
    "phi": ("phi", {}),
    "olmo": ("olmo", {}),
    "stablelm": ("stablelm", {}),
    "starcoder2": ("starcoder2", {}),
    "opt": ("opt", {"ffn_dim": 64, "word_embed_proj_dim": 32}),
    "gpt2": ("gpt2", {}),
    "gpt_neox": ("gpt_neox", {}),
    "gptj": ("gptj", {"rotary_dim": 8}),
    "falcon": ("falcon", {}),
    "bloom": ("bloom", {}),  # ALiBi
    "mpt": ("mpt", {}),  # ALiBi
}
# family -> (model_type, config keys, WordPiece vocabulary size: each family its own vocabulary)
ENCODER_FAMILIES: dict[str, tuple[str, dict, int]] = {
    "bert": ("bert", {}, 260),
    "roberta": ("roberta", {"max_position_embeddings": 130}, 280),  # positions start at pad + 1
    "distilbert": ("distilbert", {"hidden_dim": 64}, 300),
    "deberta-v2": (  # DeBERTa-v3's disentangled relative attention, as OpenAssistant's RM uses
        "deberta-v2",
        {
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "position_buckets": 32,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
        },
        320,
    ),
    "electra": ("electra", {"embedding_size": 32}, 340),
}
WORDPIECE_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def train_wordpiece(texts: Iterable[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A lower-casing BERT-style WordPiece tokenizer trained on `texts`: ``[CLS] text [SEP]``."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.WordPiece(unk_token=WORDPIECE_SPECIALS["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=list(WORDPIECE_SPECIALS.values()),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    cls, sep = WORDPIECE_SPECIALS["cls_token"], WORDPIECE_SPECIALS["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B {sep}",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **WORDPIECE_SPECIALS)


def _tiny_config(model_type: str, tokenizer, extra: dict, **more):
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return AutoConfig.for_model(model_type, **{**shape, **extra, **more})


def build_family_model(
    family: str, tokenizer, reward: bool = False, seed: int = 0
) -> PreTrainedModel:
    """A random tiny model of `family`: a causal LM, or (``reward=True``) a one-label sequence classifier.

    Raises ValueError naming the known families for an unknown one, or when an encoder
    family is asked for as a policy.
    """
    if family in DECODER_FAMILIES:
        model_type, extra = DECODER_FAMILIES[family]
    elif family in ENCODER_FAMILIES:
        if not reward:
            raise ValueError(f"{family} is an encoder: it builds as a reward model only")
        model_type, extra, _ = ENCODER_FAMILIES[family]
    else:
        known = ", ".join([*DECODER_FAMILIES, *ENCODER_FAMILIES])
        raise ValueError(f"unknown tiny family {family!r}; choose one of {known}")
    torch.manual_seed(seed)
    if reward:
        config = _tiny_config(model_type, tokenizer, extra, num_labels=1)
        return AutoModelForSequenceClassification.from_config(config).eval()
    return AutoModelForCausalLM.from_config(_tiny_config(model_type, tokenizer, extra)).eval()
