"""Matplotlib figures the notebooks draw.  Every function returns its Figure and labels its data."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import analysis
from .names import parse_name
from .results import Result


def provenance_label(result: Result) -> str:
    """A one-line caption: data, images, epochs, device."""
    data = result.provenance.get("data", {})
    return (f"{data.get('description', '?')}, {data.get('train_used', '?')} train images, "
            f"{result.epochs_run} epochs, {result.provenance.get('device', '?')}")


def learning_curves(results: list[Result], metrics=("accuracy",), title: str | None = None):
    """Per-epoch curves (train metric solid, validation dashed when present), one line per result."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for result in results:
            values = result.history.get(metric, [])
            line, = ax.plot(range(1, len(values) + 1), values, label=result.label)
            if f"val_{metric}" in result.history:
                ax.plot(range(1, len(values) + 1), result.history[f"val_{metric}"], "--",
                        color=line.get_color())
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric + (" (dashed: validation)" if any(
            f"val_{metric}" in r.history for r in results) else ""))
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or (provenance_label(results[0]) if results else ""), fontsize=9)
    fig.tight_layout()
    return fig


def gamma_histogram(result: Result, layers=None, bins: int = 60, ax=None, initial: bool = True,
                    threshold: float = analysis.DEFAULT_THRESHOLD):
    """Histogram of trained γ (all layers, or the named ones), the initial γ in grey behind it."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    names = list(result.gamma) if layers is None else list(layers)
    final = np.concatenate([result.gamma[n].ravel() for n in names])
    edges = np.histogram_bin_edges(final, bins=bins)
    if initial and result.initial_gamma:
        start = np.concatenate([result.initial_gamma[n].ravel() for n in names])
        ax.hist(start, bins=edges, color="0.8", label="at initialisation")
    ax.hist(final, bins=edges, alpha=0.8, label="trained")
    ax.axvspan(-threshold, threshold, color="tab:red", alpha=0.15,
               label=f"|γ| < {threshold:g}: {analysis.fraction_below(final, threshold):.0%}")
    ax.set_xlabel("γ")
    ax.set_ylabel("channels")
    ax.set_title(f"{result.label}" + (f" — {names[0]}" if len(names) == 1 else ""), fontsize=10)
    ax.legend(fontsize=8)
    return fig


def gamma_by_layer(result: Result, threshold: float = analysis.DEFAULT_THRESHOLD):
    """Fraction of near-zero γ and mean |γ| for each BN layer, input to output."""
    table = analysis.layer_table(result, threshold)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(table["index"], table[f"|γ|<{threshold:g}"], color="tab:red", alpha=0.7,
           label=f"fraction |γ| < {threshold:g}")
    ax.plot(table["index"], table["mean |γ|"], "k.-", label="mean |γ|")
    ax.set_xlabel("BN layer (input → output)")
    ax.set_title(f"{result.label}: {provenance_label(result)}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


POLICY_MARKERS = {"all": "s", "bn": "o", "bn+output": "D", "output": "v", "random": "X",
                  "gamma": "^", "beta": "<", "none": "."}


def accuracy_vs_parameters(results: list[Result], paper_points: dict | None = None):
    """Test accuracy against trainable parameters (log scale): one colour and marker per policy,
    joined across depths, each point labelled with its network (the depth, for CIFAR ResNets)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_policy: dict[str, list[Result]] = {}
    for result in results:
        by_policy.setdefault(result.config["policy"], []).append(result)
    for policy, group in by_policy.items():
        group.sort(key=lambda r: r.parameters["trainable"])
        x = [r.parameters["trainable"] for r in group]
        y = [100 * r.test_accuracy for r in group]
        ax.plot(x, y, marker=POLICY_MARKERS.get(policy, "o"), ms=7, lw=1, alpha=0.9, label=policy)
        for result, xy in zip(group, zip(x, y)):
            family, depth, _ = parse_name(result.config["model"])
            ax.annotate(str(depth) if family == "resnet" else result.config["model"], xy,
                        fontsize=7, xytext=(0, 6), textcoords="offset points", ha="center")
    for label, (params, accuracy) in (paper_points or {}).items():
        ax.scatter(params, accuracy, marker="*", s=120, color="k")
        ax.annotate(label, (params, accuracy), fontsize=7, xytext=(3, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale); numbers: ResNet depth")
    ax.set_ylabel("test accuracy (%)")
    ax.axhline(10, color="0.6", ls=":", label="chance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="policy", title_fontsize=8)
    if results:
        ax.set_title(provenance_label(results[0]), fontsize=9)
    fig.tight_layout()
    return fig


def depth_sweep(results: list[Result]):
    """Test accuracy against depth, one line per policy."""
    fig, ax = plt.subplots(figsize=(6, 4))
    by_policy: dict[str, list] = {}
    for result in results:
        family, depth, _ = parse_name(result.config["model"])
        if family == "resnet":
            by_policy.setdefault(result.config["policy"], []).append((depth, 100 * result.test_accuracy))
    for policy, points in sorted(by_policy.items()):
        points.sort()
        ax.plot(*zip(*points), "o-", label=policy)
    ax.set_xscale("log")
    depths = sorted({d for points in by_policy.values() for d, _ in points})
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("ResNet depth")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    if results:
        ax.set_title(provenance_label(results[0]), fontsize=9)
    fig.tight_layout()
    return fig


def gap_by_depth(series: dict, paper_points: dict | None = None):
    """The gap to full training (full minus BN-only test accuracy, in points) against ResNet depth,
    one line per recipe.  ``series`` maps a label to ``{depth: (bn_only, full)}`` Result pairs;
    the error bars are one standard error of each difference (the two test sets').
    ``paper_points`` maps a label to the (depth, gap) points the paper reports, drawn as black stars.
    The series are spread a little sideways around each depth, so that error bars do not hide each other."""
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    depths = set()
    for i, (label, pairs) in enumerate(series.items()):
        points = sorted(pairs.items())
        steps = [analysis.accuracy_difference(full, bn) for _, (bn, full) in points]
        dodge = 1.03 ** (i - (len(series) - 1) / 2)   # a factor: the depth axis is logarithmic
        ax.errorbar([d * dodge for d, _ in points], [s["difference"] for s in steps],
                    yerr=[s["standard error"] for s in steps], fmt="o-", capsize=3, label=label)
        depths.update(d for d, _ in points)
    for label, points in (paper_points or {}).items():
        ax.errorbar(*zip(*points), fmt="*", ms=12, color="k", label=label)   # the paper quotes no error
        depths.update(d for d, _ in points)
    ax.set_xscale("log")
    ax.set_xticks(sorted(depths), [str(d) for d in sorted(depths)])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(xlabel="ResNet depth (log scale)", ylabel="full minus BN-only test accuracy (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def parameter_chart(table):
    """Bar chart of a freeze.policy_table: trainable parameters per model and policy (log scale)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    table.plot.bar(ax=ax, logy=True, width=0.8)
    ax.set_ylabel("trainable parameters")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return fig
