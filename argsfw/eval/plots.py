"""The evaluation plots: reward and oracle against compute, the RM against the oracle, the weight sweep.

Every method family (greedy, best-of-n, ARGS-greedy, the PPO policy …) keeps one colour and
one marker across all plots; points of a sweep are annotated with the setting that varies
(``N=4``, ``w=1.5 k=10``, ``τ=0.5``). Legends sit outside the axes so they cover no point.
The cost axis is compute per generated token, on a log scale: by default the forward FLOPs of
the policy and the reward model for a record over the tokens it generated, or (``eval.cost_axis:
tokens``) the token positions both computed (prompt included, padding excluded). Outputs that
predate FLOPs accounting are drawn on tokens. The Pareto front (no other method gets more for
less) is drawn through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from argsfw.decoding.registry import find_method
from argsfw.eval.stats import si


def _trained() -> dict[str, tuple[str, str]]:
    """Policies trained to be aligned (training-time baselines: the fit stages that declare a plot
    style), by stage name -> (colour, marker); an entry whose label starts with the stage's name
    is one, drawn as a reference line beside the decoding-time methods."""
    from argsfw.stages import stages

    return {n: (s.color, s.marker) for n, s in stages().items() if s.color}


TRAINED = _trained()


# family -> (colour, marker): each decoding method's own (argsfw.decoding.registry), and the
# trained policies'; unknown families get the fallbacks in turn
def _styles() -> dict[str, tuple[str, str]]:
    from argsfw.decoding.registry import methods

    own = {n: (m.color, m.marker) for n, m in methods().items() if n == m.name}
    return {**own, **TRAINED}


STYLES = _styles()
FALLBACK = [
    ("#8c564b", "h"),
    ("#e377c2", "p"),
    ("#7f7f7f", "<"),
    ("#000080", ">"),
    ("#808000", "8"),
]


def family(entry: dict[str, Any]) -> str:
    """The method family of a report entry: ``ppo`` for a PPO policy's label, else the label's first word."""
    label = str(entry.get("label") or entry.get("method") or "?").split("#")[0]
    head = label.split(" ")[0]
    trained = next((t for t in TRAINED if head.lower().startswith(t)), None)
    return trained or head


def _method(entry: dict[str, Any]):
    """The registry's method of a report entry (its recorded method, else its label's), or None."""
    return find_method(entry.get("method")) or find_method(family(entry).split("(")[0])


def _style(fam: str, seen: dict[str, tuple[str, str]]) -> tuple[str, str]:
    if fam in STYLES:
        return STYLES[fam]
    if fam not in seen:
        seen[fam] = FALLBACK[len(seen) % len(FALLBACK)]
    return seen[fam]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, value) no other point dominates, by increasing cost.

    A point is dominated when another costs no more and gets no less, and is strictly
    better in one of the two. Equal points are all kept.
    """
    front = [
        i
        for i, (c, v) in enumerate(points)
        if not any(
            c2 <= c and v2 >= v and (c2 < c or v2 > v)
            for j, (c2, v2) in enumerate(points)
            if j != i
        )
    ]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _settings(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Each entry's label without its family and without the parts its whole family shares:
    what varies inside a sweep (``τ=0.6`` for gated runs that share w and k)."""
    parts = [str(e.get("label", "")).split("#")[0].split(" ")[1:] for e in entries]
    fams = [family(e) for e in entries]
    out = []
    for fam, mine in zip(fams, parts):
        kin = [p for f, p in zip(fams, parts) if f == fam]
        common = set.intersection(*(set(p) for p in kin)) if len(kin) > 1 else set()
        out.append(" ".join(t for t in mine if t not in common))
    return out


def _points(report: dict[str, Any], x: str, y: str) -> list[tuple[dict, float, float, float]]:
    """``(entry, x, y, y standard error)`` for every input that has both metrics."""
    out = []
    for e in report["inputs"]:
        m = e["metrics"]
        if isinstance(m.get(x), (int, float)) and isinstance(m.get(y), (int, float)):
            out.append((e, float(m[x]), float(m[y]), float(m.get(f"{y}_se") or 0.0)))
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _scatter(ax, pts, annotate: bool = True) -> None:
    """One legend entry per family; each point annotated with what varies in its family."""
    seen: dict[str, tuple[str, str]] = {}
    labelled: set[str] = set()
    for e, x, y, se in pts:
        fam = family(e)
        colour, marker = _style(fam, seen)
        ax.errorbar(
            [x], [y], yerr=[se] if se else None, color=colour, marker=marker, ms=8 if marker == "*" else 6,
            ls="none", capsize=2, elinewidth=0.8, label=None if fam in labelled else fam,
        )  # fmt: skip
        labelled.add(fam)
    if annotate:
        texts = _settings([e for e, *_ in pts])
        colours = [_style(family(e), seen)[0] for e, *_ in pts]
        _place_labels(ax, [(x, y) for _, x, y, _ in pts], texts, colours)


def _sweep_lines(ax, pts) -> None:
    """A thin line through the points of each family that has several (a sweep of w, N, M, α),
    in order of cost, so a method's trade-off reads as one curve."""
    seen: dict[str, tuple[str, str]] = {}
    by: dict[str, list[tuple[float, float]]] = {}
    for e, x, y, _ in pts:
        by.setdefault(family(e), []).append((x, y))
    for fam, xy in by.items():
        if len(xy) > 1:
            xy.sort()
            ax.plot(
                [x for x, _ in xy],
                [y for _, y in xy],
                color=_style(fam, seen)[0],
                lw=0.8,
                alpha=0.6,
            )


def _place_labels(ax, xy: list[tuple[float, float]], texts: list[str], colours: list[str]) -> None:
    """Annotate points, moving a label to the next free spot around its point when it would
    overlap one already placed (matplotlib has no label placement; adjustText is not a dependency)."""
    ax.autoscale_view()
    to_px = ax.transData.transform
    h = 8.0
    # x0, y0, x1, y1 in pixels of what a label must not cover: the markers, then placed labels
    placed = [(px - 5, py - 5, px + 5, py + 5) for px, py in (to_px(p) for p in xy)]
    for (x, y), text, colour in sorted(zip(xy, texts, colours), key=lambda t: -t[0][1]):
        if not text:
            continue
        w = 3.6 * len(text) + 2
        px, py = to_px((x, y))
        for dx, dy in (
            (5, 2),
            (5, -h - 2),
            (-w - 5, 2),
            (-w - 5, -h - 2),
            (5, h + 4),
            (5, -2 * h - 4),
        ):
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
            if not any(
                b[0] < box[2] and box[0] < b[2] and b[1] < box[3] and box[1] < b[3] for b in placed
            ):
                break
        placed.append(box)
        ax.annotate(
            text, (x, y), textcoords="offset pixels", xytext=(dx, dy), fontsize=6, color=colour
        )


def _legend(ax) -> None:
    """The legend outside the axes, families in `STYLES` order, extra entries (front, lines) first."""
    handles, labels = ax.get_legend_handles_labels()
    rank = {f: i for i, f in enumerate(STYLES)}
    pairs = sorted(zip(handles, labels), key=lambda p: rank.get(p[1], -1))
    ax.legend(*zip(*pairs), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _finish(fig, ax, out: Path, title: str) -> Path:
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    _legend(ax)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def cost_axis(report: dict[str, Any], metric: str = "reward") -> tuple[str, str]:
    """The metric key and axis label of the cost axis: FLOPs per generated token unless the
    report's ``config.cost_axis`` is ``tokens`` or some input with ``metric`` lacks FLOPs."""
    tokens = "compute_tokens_per_token"
    if (report.get("config") or {}).get("cost_axis", "flops") == "flops" and len(
        _points(report, "flops_per_token", metric)
    ) == len(_points(report, tokens, metric)):
        return "flops_per_token", "forward FLOPs per generated token (policy + RM, log scale)"
    return tokens, "compute per generated token (LLM + RM forward tokens, log scale)"


def plot_vs_cost(report: dict[str, Any], out: Path, metric: str = "reward") -> Path | None:
    """``metric`` (± SE) against compute per generated token, log x, Pareto front marked."""
    key, label = cost_axis(report, metric)
    pts = _points(report, key, metric)
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _scatter(ax, pts)
    _sweep_lines(ax, pts)
    front = pareto_front([(x, y) for _, x, y, _ in pts])
    fx, fy = [pts[i][1] for i in front], [pts[i][2] for i in front]
    ax.step(fx, fy, where="post", color="black", lw=1, ls="--", alpha=0.7, label="Pareto front")
    ax.scatter(fx, fy, s=140, facecolors="none", edgecolors="black", lw=1, zorder=3)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: si(v))  # 2, 5, 10 / 20M, 50M: not 2×10⁰
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(label)
    name = {"reward": "mean RM reward", "judge_reward": "mean judge RM reward"}.get(
        metric, "oracle (ground truth)"
    )
    ax.set_ylabel(name)
    return _finish(fig, ax, out, f"{name} vs compute")


def plot_reward_vs_oracle(report: dict[str, Any], out: Path) -> Path | None:
    """Oracle against RM reward; the ARGS-greedy weight sweep joined in order of w.

    Where the line turns down while the reward keeps growing, the search exploits the RM.
    """
    pts = _points(report, "reward", "oracle")
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, series in _weight_series(report).items():
        ws = [(w, e["metrics"]) for w, e in series if e["metrics"].get("oracle") is not None]
        if len(ws) > 1:
            colour = _style(name.split(" ")[0], {})[0]
            ax.plot([m["reward"] for _, m in ws], [m["oracle"] for _, m in ws], color=colour,
                    lw=1, alpha=0.6, label=f"{name}, w increasing")  # fmt: skip
    _scatter(ax, pts)
    ax.set_xlabel("mean RM reward")
    ax.set_ylabel("oracle (ground truth)")
    return _finish(fig, ax, out, "Does more RM reward mean better answers?")


def _knob(entry: dict[str, Any], name: str | None):
    """A knob's value in a report entry (its ``settings``), or None."""
    return (entry.get("settings") or {}).get(name) if name else None


def _weight_series(report: dict[str, Any]) -> dict[str, list[tuple[float, dict]]]:
    """Inputs of methods drawn as a curve over w, by method and their other label knobs (k, τ):
    ``{"args-greedy k=10": [(w, entry), ...]}``."""
    series: dict[str, list[tuple[float, dict]]] = {}
    for e in report["inputs"]:
        method = _method(e)
        if method is None or method.curve != "weight" or family(e) in TRAINED:
            continue
        w = _knob(e, "weight")
        if not isinstance(w, (int, float)):
            continue
        key = family(e)
        for knob, short in method.label_knobs:
            value = _knob(e, knob)
            if knob != method.curve and isinstance(value, (int, float)):
                key += f" {short}={value:g}"
        series.setdefault(key, []).append((float(w), e))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in series.items()}


def plot_vs_weight(report: dict[str, Any], out: Path) -> Path | None:
    """Reward (and the oracle, when measured) against w for reward-weighted methods.

    Greedy, the PPO and DPO policies and the largest best-of-N are horizontal references, each in
    its family's colour. None when no weighted input has a reward.
    """
    series = {
        k: [(w, e) for w, e in v if e["metrics"].get("reward") is not None]
        for k, v in _weight_series(report).items()
    }
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    if any(len(v) > 1 for v in series.values()):  # single settings live in the other plots
        series = {k: v for k, v in series.items() if len(v) > 1}
    metrics = ["reward"] + (
        ["oracle"] if any(e["metrics"].get("oracle") is not None for v in series.values() for _, e in v) else []
    )  # fmt: skip
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics) + 1.5, 4), squeeze=False)
    refs = _references(report)
    for ax, metric in zip(axes[0], metrics):
        for name, pts in series.items():
            colour, marker = _style(name.split(" ")[0], {})
            ws = [w for w, e in pts if e["metrics"].get(metric) is not None]
            ys = [e["metrics"][metric] for _, e in pts if e["metrics"].get(metric) is not None]
            ses = [
                e["metrics"].get(f"{metric}_se") or 0.0
                for _, e in pts
                if e["metrics"].get(metric) is not None
            ]
            ax.errorbar(
                ws, ys, yerr=ses, color=colour, marker=marker, capsize=2, lw=1.2, label=name
            )
        for (label, fam, m), ls in zip(refs, ("--", ":", "-.", (0, (5, 1)))):
            if m.get(metric) is not None:
                ax.axhline(m[metric], color=_style(fam, {})[0], ls=ls, lw=1.2, label=label)
        ax.set_xlabel("reward weight w")
        ax.set_ylabel("mean RM reward" if metric == "reward" else "oracle (ground truth)")
        ax.set_title(("RM reward" if metric == "reward" else "oracle") + " vs weight", fontsize=10)
        ax.grid(True, alpha=0.25)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _references(report: dict[str, Any]) -> list[tuple[str, str, dict]]:
    """Greedy, the PPO and DPO policies and the largest best-of-N: ``(label, family, metrics)``."""
    refs, best = [], None
    for e in report["inputs"]:
        fam = family(e)
        method = _method(e)
        if fam in TRAINED or (
            method is not None and method.needs == "nothing" and not method.samples
        ):
            refs.append((e["label"], fam, e["metrics"]))  # the deterministic unguided baseline
        elif (
            method is not None
            and method.curve == "num_samples"
            and method.run is not None
            and (best is None or (_knob(e, "num_samples") or 0) > (_knob(best, "num_samples") or 0))
        ):
            best = e
    if best is not None:
        refs.append((best["label"], family(best), best["metrics"]))
    return refs


def plot_reward_diversity(report: dict[str, Any], out: Path) -> Path | None:
    """One point per input in the (diversity, reward) plane. None when no input has both."""
    pts = _points(report, "diversity", "reward")
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _scatter(ax, pts)
    ax.set_xlabel("diversity")
    ax.set_ylabel("mean RM reward")
    return _finish(fig, ax, out, "Reward–diversity plane")


PLOTS: dict[str, Callable[[dict[str, Any], Path], Path | None]] = {
    "reward_vs_cost": lambda r, p: plot_vs_cost(r, p, "reward"),
    "oracle_vs_cost": lambda r, p: plot_vs_cost(r, p, "oracle"),
    "judge_vs_cost": lambda r, p: plot_vs_cost(r, p, "judge_reward"),
    "reward_vs_oracle": plot_reward_vs_oracle,
    "reward_vs_weight": plot_vs_weight,
    "reward_diversity": plot_reward_diversity,
}
