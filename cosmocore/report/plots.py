"""The benchmark report's PNG figures, drawn from the report dict (and the episodes table for
the valence/arousal scatter).

Figures are built with ``matplotlib.figure.Figure`` directly (Agg rendering, no pyplot): no
global figure state, no GUI backend, safe in a notebook or a worker process. Every figure is
written even when its data is missing, with a note saying so, so the report's links never break.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from cosmocore.memory.config import BufferConfig
from cosmocore.memory.replay_index import BIN_NAMES, DREAM

DREAM_BIN = BIN_NAMES[DREAM]
MAX_POINTS = 4000  # per group in the scatter: enough to see the shape, small enough to stay fast
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_KNOWN = ("uniform", "cosmocore", "no_prioritization", "no_pruning", "cocos")


def color(arm: str) -> str:
    """A stable colour per arm name (the same arm has the same colour in every figure)."""
    i = _KNOWN.index(arm) if arm in _KNOWN else len(_KNOWN) + zlib.crc32(arm.encode()) % 3
    return _PALETTE[i % len(_PALETTE)]


def _figure(width: float = 7.0, height: float = 4.2) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _no_data(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _xy(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Cycle indices and values where the value is defined."""
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    return np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)


def _band(ax: Any, curve: Mapping[str, Any], arm: str, label: str) -> bool:
    """A mean line with its CI band; False when the curve has no point."""
    x, y = _xy(curve["mean"])
    if not len(x):
        return False
    ax.plot(x, y, marker="o", ms=3, color=color(arm), label=label)
    band = [(i, ci[0], ci[1]) for i, ci in enumerate(curve["ci95"]) if ci and ci[0] is not None]
    if band:
        bx, lo, hi = (np.array(v, float) for v in zip(*band))
        ax.fill_between(bx, lo, hi, color=color(arm), alpha=0.18, linewidth=0)
    return True


def hallucination_rate(report: Mapping[str, Any], path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    drawn = [_band(ax, a["hallucination_rate_per_cycle"], name, f"{name} (n={len(a['seeds'])})")
             for name, a in report["arms"].items()]
    if any(drawn):
        ax.legend(fontsize=8)
        if report.get("target"):
            ax.axhline(report["target"], color="0.5", ls=":", lw=1)
    else:
        _no_data(ax, "no evaluations")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="cycles trained (0 = before training)", ylabel="hallucination rate (eval, turn 1)",
           title="Hallucination rate per cycle: mean and 95% CI across seeds", ylim=(-0.03, 1.03))
    fig.savefig(path)
    return path


def cycles_to_zero_error(report: Mapping[str, Any], path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    names = list(report["arms"])
    budget = report["cycles"]
    rng = np.random.default_rng(0)  # jitter only, for overlapping seeds
    censored_label = True
    for i, name in enumerate(names):
        c = report["arms"][name]["cycles_to_zero_error"]
        reached = [v for v in c["per_seed"] if v is not None]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(reached)), reached, color=color(name), zorder=3)
        n_cens = c["censored"]
        if n_cens:
            ax.scatter(i + rng.uniform(-0.12, 0.12, n_cens), [budget + 0.5] * n_cens, marker="^", facecolors="none",
                       edgecolors=color(name), zorder=3, label=f"censored (> {budget} cycles)" if censored_label else None)
            censored_label = False
        if c["mean"] is not None:
            ci = c["ci95"]
            yerr = None if not ci else [[c["mean"] - ci[0]], [ci[1] - c["mean"]]]
            ax.errorbar(i + 0.25, c["mean"], yerr=yerr, fmt="D", color="black", ms=4, capsize=3)
    if names:
        ax.axhline(budget, color="0.6", ls=":", lw=1)
        ax.set_xticks(range(len(names)), names)
        if not censored_label:
            ax.legend(fontsize=8)
    else:
        _no_data(ax, "no finished runs")
    ax.set(ylabel=f"cycles to rate <= {report.get('target', 0.0):g}", ylim=(-0.5, budget + 1.5),
           title="Cycles to zero error: seeds (points), mean of those that reached it with 95% CI (diamond)")
    ax.title.set_fontsize(9)
    fig.savefig(path)
    return path


def _bars(ax: Any, names: list[str], stats: list[Mapping[str, Any]], offset: float, width: float,
          label: str | None = None, hatch: str | None = None) -> None:
    means = [s["mean"] if s["mean"] is not None else 0.0 for s in stats]
    lo = [m - s["ci95"][0] if s["ci95"] else 0.0 for m, s in zip(means, stats)]
    hi = [s["ci95"][1] - m if s["ci95"] else 0.0 for m, s in zip(means, stats)]
    x = np.arange(len(names)) + offset
    ax.bar(x, means, width, color=[color(n) for n in names], hatch=hatch, edgecolor="black", linewidth=0.5,
           yerr=[lo, hi], capsize=3, label=label)
    for xi, s in zip(x, stats):
        if s["mean"] is None:
            ax.text(xi, 0.01, "n/a", ha="center", fontsize=7, color="0.4")


def recurrence_and_self_correction(report: Mapping[str, Any], path: Path) -> Path:
    fig = _figure(9.0, 4.0)
    left, right = fig.subplots(1, 2)
    names = list(report["arms"])
    arms = report["arms"]
    if names:
        _bars(left, names, [arms[n]["bug_recurrence_rate"] for n in names], 0.0, 0.6)
        _bars(right, names, [arms[n]["self_correction"]["delta_i_to_c"] for n in names], -0.2, 0.4, "Δi→c")
        _bars(right, names, [arms[n]["self_correction"]["delta_c_to_i"] for n in names], 0.2, 0.4, "Δc→i", "//")
        for ax in (left, right):
            ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        right.legend(handles=[Patch(facecolor="white", edgecolor="black", label="Δi→c (wrong -> right)"),
                              Patch(facecolor="white", edgecolor="black", hatch="//", label="Δc→i (right -> wrong)")],
                     fontsize=8)
    else:
        _no_data(left, "no finished runs")
    left.set(title="Bug recurrence rate (mean, 95% CI)", ylabel="share of later attempts failing again", ylim=(0, 1.02))
    right.set(title="Self-correction at the last cycle (mean, 95% CI)", ylabel="share of eval problems", ylim=(0, 1.02))
    for ax in (left, right):
        ax.title.set_fontsize(9)
    fig.savefig(path)
    return path


def buffer_occupancy(report: Mapping[str, Any], path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    drawn = False
    for name, a in report["arms"].items():
        curve = a["buffer_occupancy_per_cycle"]
        if any(v for v in curve["mean"] if v is not None):  # arms without a buffer (cocos) stay out
            drawn |= _band(ax, curve, name, name)
    if drawn:
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "no replay buffer in this bench")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    both = {"cosmocore", "no_pruning"} <= set(report["arms"])
    ax.set(xlabel="cycle", ylabel="buffer entries after the night (after pruning)",
           title="Replay buffer occupancy" + (": cosmocore (pruning) vs no_pruning" if both else ""))
    fig.savefig(path)
    return path


def valence_arousal(arm_episodes: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    fig = _figure(6.0, 4.6)
    ax = fig.add_subplot()
    rows = [e for eps in arm_episodes.values() for e in eps
            if e.get("valence") is not None and e.get("arousal") is not None]
    rng = np.random.default_rng(0)
    for is_dream, label, col in ((False, "rest", "0.6"), (True, "Dream Queue", "#d62728")):
        pts = np.array([(e["valence"], e["arousal"]) for e in rows if (e.get("bin") == DREAM_BIN) == is_dream], float)
        n = len(pts)
        if n > MAX_POINTS:
            pts = pts[rng.choice(n, MAX_POINTS, replace=False)]
        if n:
            ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.5, color=col, label=f"{label} ({n})")
    if rows:
        cfg = BufferConfig()
        for v in (-cfg.dream_valence, cfg.dream_valence):
            ax.axvline(v, color="0.3", ls=":", lw=1)
        ax.axhline(cfg.dream_arousal, color="0.3", ls=":", lw=1)
        ax.legend(fontsize=8, loc="upper center")
    else:
        _no_data(ax, "no tagged episodes")
    ax.set(xlabel="valence", ylabel="arousal", xlim=(-1.05, 1.05), ylim=(-0.05, 1.05),
           title="Tagged training episodes: Dream Queue (|v|>0.5, a>0.7) vs the rest")
    ax.title.set_fontsize(9)
    fig.savefig(path)
    return path


def learning_curves(report: Mapping[str, Any], path: Path) -> Path:
    """Left: the practice set's error rate per cycle, one thin line per seed and the mean bold,
    per arm (the held-out curve when a bench has no practice rows). Right: the paired difference
    arm - uniform per cycle with its 95% band (below 0 = the arm makes fewer errors)."""
    fig = _figure(10.0, 4.2)
    left, right = fig.subplots(1, 2)
    arms = report["arms"]
    practice = any(a.get("practice_hallucination_rate_per_cycle", {}).get("cycle") for a in arms.values())
    drawn = False
    for name, a in arms.items():
        if practice:
            curve = a.get("practice_hallucination_rate_per_cycle") or {"cycle": [], "per_seed": [], "mean": []}
            xs = list(curve["cycle"])
        else:
            curve = a["hallucination_rate_per_cycle"]
            xs = list(range(len(curve["mean"])))
        for seed_curve in curve.get("per_seed") or []:
            pts = [(x, y) for x, y in zip(xs, seed_curve) if y is not None]
            if pts:
                left.plot(*zip(*pts), color=color(name), lw=0.8, alpha=0.45)
        pts = [(x, y) for x, y in zip(xs, curve["mean"]) if y is not None]
        if pts:
            left.plot(*zip(*pts), color=color(name), lw=2.2, label=f"{name} (n={len(a['seeds'])})")
            drawn = True
    if drawn:
        left.legend(fontsize=8)
    else:
        _no_data(left, "no evaluations")
    left.set(xlabel="cycles trained", ylabel=f"error rate ({'practice set' if practice else 'held-out'}, turn 1)",
             title="Per seed (thin) and mean (bold)", ylim=(-0.03, 1.03))
    diff_drawn = False
    for name, a in arms.items():
        d = a.get("practice_difference_per_cycle")
        if not d or not d["cycle"]:
            continue
        pts = [(x, m) for x, m in zip(d["cycle"], d["mean"]) if m is not None]
        band = [(x, ci[0], ci[1]) for x, ci in zip(d["cycle"], d["ci95"]) if ci and ci[0] is not None]
        if pts:
            right.plot(*zip(*pts), marker="o", ms=3, color=color(name), label=f"{name} - {d['baseline']}")
            diff_drawn = True
        if band:
            bx, lo, hi = (np.array(v, float) for v in zip(*band))
            right.fill_between(bx, lo, hi, color=color(name), alpha=0.18, linewidth=0)
    if diff_drawn:
        right.axhline(0, color="0.4", lw=1)
        right.legend(fontsize=8)
    else:
        _no_data(right, "no paired practice-set data (needs the uniform arm and practice rows)")
    right.set(xlabel="cycles trained", ylabel="paired difference of the error rate",
              title="Arm - uniform, paired by seed and task (95% band)", ylim=(-1.03, 1.03))
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(9)
    fig.savefig(path)
    return path


def write_all(report: Mapping[str, Any], arm_episodes: Mapping[str, Sequence[Mapping[str, Any]]],
              out_dir: Path) -> dict[str, Path]:
    """Every figure of the report into ``out_dir``; returns {name: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "learning_curves": learning_curves(report, out_dir / "learning_curves.png"),
        "hallucination_rate": hallucination_rate(report, out_dir / "hallucination_rate.png"),
        "cycles_to_zero_error": cycles_to_zero_error(report, out_dir / "cycles_to_zero_error.png"),
        "recurrence_self_correction": recurrence_and_self_correction(report, out_dir / "recurrence_self_correction.png"),
        "buffer_occupancy": buffer_occupancy(report, out_dir / "buffer_occupancy.png"),
        "valence_arousal": valence_arousal(arm_episodes, out_dir / "valence_arousal.png"),
    }
