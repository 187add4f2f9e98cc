"""TreeBoN against a slow reference that shares no code with it: every node grown one token at a
time by the policy's own full forward (no cache, the nucleus rule written out again), the implicit
reward read from full forwards of pi_dpo and pi_ref, the RM's reward from its own Hugging Face
forward, ranking, branching and the final pick written out again. Only the seeded draws are
shared."""

from __future__ import annotations

import math

import pytest
import torch

from argsfw.decoding import ArgsDecoder, DecodeConfig, decode_settings
from argsfw.decoding.implicit import ImplicitReward
from argsfw.decoding.sampling import make_generator, sample_rows

BETA, STEPS = 0.5, 11


def _draw(llm, ids, top_p, temperature, gen) -> int:
    logits = llm(input_ids=torch.tensor([ids])).logits[0, -1].float() / temperature
    order = logits.argsort(descending=True)
    probs = logits[order].softmax(-1)
    kept = logits[order].masked_fill(probs.cumsum(0) - probs >= top_p, float("-inf"))
    return int(order[sample_rows(kept.softmax(-1)[None], [gen])[0]])


def _log_ratio(m, ids, tok) -> float:
    x = torch.tensor([ids])
    dpo = torch.log_softmax(m.arm(input_ids=x).logits[0, -1].double(), 0)[tok]
    ref = torch.log_softmax(m.llm(input_ids=x).logits[0, -1].double(), 0)[tok]
    return BETA * float(dpo - ref)


def _rm(m, ids) -> float:
    x = torch.tensor([ids])
    return float(m.rm(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, 0])


@torch.inference_mode()
def _reference(m, prompt, key, s, o, eos, implicit):
    """``(chosen answer, ended with EOS, policy positions read, RM positions read by a prefix
    cache, nodes that ended)`` for one prompt."""
    nodes = [
        {"tokens": [], "gen": make_generator(s.seed, key, sample=j), "done": False, "total": 0.0}
        for j in range(s.num_samples)
    ]
    leaves, layer, read, rm_read, ended = [], 0, len(prompt), len(prompt), 0
    while True:
        length = len(nodes[0]["tokens"])
        seg = min(o["segment_length"], s.max_new_tokens - length)
        for x in nodes:
            x["score"] = 0.0
            for t in range(seg):
                ids = prompt + x["tokens"]
                tok = _draw(m.llm, ids, s.top_p, s.temperature, x["gen"])
                if implicit:
                    gain = _log_ratio(m, ids, tok)
                    x["score"] += gain / (t + 1)
                    x["total"] += gain
                x["tokens"].append(tok)
                read += t > 0  # the token before this one was read to draw it
                if tok in eos:
                    x["done"] = True
                    ended += 1
                    break
            x["value"] = x["total"]
            if not implicit:
                x["score"] = x["value"] = _rm(m, prompt + x["tokens"])
                rm_read += len(x["tokens"]) - length  # the segment's new tokens
        if length + seg >= s.max_new_tokens:
            leaves += nodes
            break
        k = max(1, math.floor(o["keep_fraction"] * len(nodes) + 1e-9))
        best = sorted(sorted(range(len(nodes)), key=lambda j: (-nodes[j]["score"], j))[:k])
        leaves += [nodes[j] for j in best if nodes[j]["done"]]
        parents = [nodes[j] for j in best if not nodes[j]["done"]]
        if not parents:
            break
        read += len(parents)  # each parent's last token, once for all its children
        layer += 1
        nodes = [
            {"tokens": list(x["tokens"]), "total": x["total"], "done": False,
             "gen": make_generator(s.seed, key, sample=layer * 1_000_000 + c)}
            for c, x in enumerate(x for x in parents for _ in range(o["children"]))
        ]  # fmt: skip
    pick = max(range(len(leaves)), key=lambda j: (leaves[j]["value"], -j))
    return leaves[pick]["tokens"], leaves[pick]["done"], read, rm_read, ended


def _settings(method, **knobs):
    o = {"segment_length": 3, "children": 2, "keep_fraction": 0.5, **knobs}
    s = decode_settings(method, num_samples=4, max_new_tokens=STEPS, temperature=1.0, top_p=0.95, batch_size=4, **o)  # fmt: skip
    return s, o


@pytest.mark.parametrize(
    "method,options",
    [
        ("treebon", {}),
        ("treebon", {"segment_length": 4, "children": 4, "keep_fraction": 0.25}),
        ("treebon-rm", {}),
        ("treebon-rm", {"children": 1, "keep_fraction": 0.5}),  # the tree thins out
    ],
)
def test_against_the_slow_reference(llama, prompts, method, options):
    implicit = method == "treebon"
    guide = ImplicitReward(llama.arm, llama.llm, BETA) if implicit else llama.rm
    dec = ArgsDecoder(llama.llm, llama.tokenizer, guide)
    free, _ = dec.generate(prompts, DecodeConfig(method="nucleus", max_new_tokens=6))
    dec.eos_ids = sorted({t for g in free for t in g.new_ids[1:6]})  # common tokens: early EOS
    s, o = _settings(method, **options)
    gens, _ = dec.generate(prompts, s)
    one, _ = dec.generate(prompts, s, batch_size=1)
    nodes_ended = 0
    for p, g, g1 in zip(prompts, gens, one):
        ids = list(llama.tokenizer(p).input_ids)
        want, ended, read, rm_read, n_ended = _reference(
            llama, ids, p, s, o, set(dec.eos_ids), implicit
        )
        nodes_ended += n_ended
        assert g.new_ids == want == g1.new_ids, (method, p)
        assert g.finished == ended
        # the prompt once; no token read twice (the ledger finds no re-read), dropped nodes stop
        assert g.llm_tokens == read and g.llm_reread == 0
        if implicit:  # pi_dpo and pi_ref read what the policy read
            assert g.rm_tokens == 2 * read and g.rm_reread == 0
            assert g.rm_flops == pytest.approx(2 * g.llm_flops)  # two models of its shape
        else:  # the RM read the prompt once and each candidate's new tokens at its layer's end
            assert g.rm_reread == 0 and g.rm_tokens == rm_read
    assert nodes_ended >= 2  # candidates ended inside segments


def test_one_layer_is_best_of_n(llama, prompts):
    """segment_length >= max_new_tokens: N samples, the RM's best kept: best-of-N token for token."""
    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    s, _ = _settings("treebon-rm", segment_length=STEPS)
    tree, st_tree = dec.generate(prompts, s)
    bon, st_bon = dec.generate(prompts, decode_settings("best-of-n", s))
    assert [g.new_ids for g in tree] == [g.new_ids for g in bon]
    cost = ("llm_tokens", "rm_tokens", "llm_flops", "rm_flops", "llm_reread", "rm_reread")
    assert [[getattr(g, c) for c in cost] for g in tree] == [
        [getattr(g, c) for c in cost] for g in bon
    ]


@pytest.mark.parametrize(
    "knobs,match",
    [
        ({"children": 0}, "decode.children must be an integer >= 1, got 0"),
        ({"keep_fraction": 0.0}, r"decode.keep_fraction must be a number in \(0, 1\], got 0.0"),
        ({"keep_fraction": 0.5, "children": 4}, "would grow the tree past N"),
    ],
)
def test_bad_knobs_are_one_line(knobs, match):
    from argsfw.decoding.config import check_decode_settings
    from argsfw.decoding.types import DecodeInputError

    with pytest.raises(DecodeInputError, match=match) as e:
        check_decode_settings(decode_settings("treebon", **knobs), prefix="decode.")
    assert "\n" not in str(e.value)


def test_treebon_needs_a_dpo_run(llama):
    from argsfw.decoding.types import DecodeInputError

    dec = ArgsDecoder(llama.llm, llama.tokenizer, llama.rm)
    with pytest.raises(DecodeInputError, match="needs a DPO run"):
        dec.generate(["Hi"], decode_settings("treebon", max_new_tokens=2))


def test_listed_with_their_knobs():
    from argsfw.methods import describe

    info = {m["name"]: m for m in describe()["methods"]}
    assert info["treebon"]["needs"] == "implicit" and info["treebon-rm"]["needs"] == "sequence"
    assert info["cards"]["needs"] == "sequence"
    for name, knob in [("treebon", "children"), ("cards", "entropy_threshold")]:
        (k,) = [k for k in info[name]["knobs"] if k["name"] == knob]
        assert k["range"] and k["doc"]
