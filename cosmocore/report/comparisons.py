"""The report's relative-change comparisons (every arm vs the baseline on the headline metrics)
and the published claims read as relative changes (``paper_claims``). Since issue 21 the
verdicts that decide are ``claims.py``'s paired differences; these stay for the keys
``comparisons`` and ``paper_claims`` that older readers use.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cosmocore.report import metrics as M

BASELINE = "uniform"
NOT_MEASURABLE, REPRODUCED, NOT_REPRODUCED = "not measurable", "reproduced", "not reproduced"
# Headline comparisons of every arm against the baseline: report metric -> per-arm value key.
HEADLINE = ("final_hallucination_rate", "cycles_to_zero_error", "bug_recurrence_rate",
            "self_correction.delta_i_to_c", "self_correction.delta_c_to_i", "buffer_occupancy_max")


@dataclass(frozen=True)
class Claim:
    """A published effect, as a relative change of ``metric`` for ``arm`` vs ``baseline``."""

    metric: str
    arm: str
    baseline: str
    source: str
    text: str
    value: float | None  # the claimed relative change; None when only a direction is claimed
    direction: int  # -1: the claim is a decrease, +1: an increase


COSMOCORE = "CosmoCore (arXiv 2510.18895)"
COCOS = "COCOS (arXiv 2505.23060)"
CLAIMS = (
    Claim("final_hallucination_rate", "cosmocore", BASELINE, COSMOCORE, "48% fewer hallucinations", -0.48, -1),
    Claim("cycles_to_zero_error", "cosmocore", BASELINE, COSMOCORE,
          "45% faster self-correction: 80 -> 44 cycles to zero error (44/80 - 1 = -0.45)", -0.45, -1),
    Claim("buffer_occupancy_max", "no_pruning", "cosmocore", COSMOCORE, "+25% buffer bloat without pruning", 0.25, +1),
    Claim("self_correction.delta_i_to_c", "cocos", BASELINE, COCOS,
          "online self-correction RL raises Δi→c (wrong at turn 1, right at turn 2)", None, +1),
    Claim("self_correction.delta_c_to_i", "cocos", BASELINE, COCOS,
          "online self-correction RL lowers Δc→i (right at turn 1, wrong at turn 2)", None, -1),
)

def _metric_values(arm: Mapping[str, Any], metric: str) -> dict[int, Any]:
    """{seed: value} of a headline metric; cycles-to-zero-error counts a censored seed as the
    budget (the restricted mean: a lower bound, so a comparison is conservative)."""
    if metric == "cycles_to_zero_error":
        c = arm["cycles_to_zero_error"]
        values = [c["budget"] if v is None else v for v in c["per_seed"]]
    elif metric.startswith("self_correction."):
        values = arm["self_correction"][metric.split(".", 1)[1]]["per_seed"]
    else:
        values = arm[metric]["per_seed"]
    return dict(zip(arm["seeds"], values))


def compare(arms: Mapping[str, Mapping[str, Any]], metric: str, arm: str, baseline: str) -> dict:
    """relative_change of ``metric`` for ``arm`` vs ``baseline``, paired by seed where both
    arms have the same finished seeds, with why it is undefined when it is."""
    a, b = _metric_values(arms[arm], metric), _metric_values(arms[baseline], metric)
    rc = M.relative_change(a, b)
    out = {"metric": metric, "arm": arm, "baseline": baseline, "relative_change": rc["relative_change"],
           "ci95": rc["ci95"] if min(rc["n_arm"], rc["n_baseline"]) > 1 else None, "paired": rc["paired"],
           "n_arm": rc["n_arm"], "n_baseline": rc["n_baseline"],
           "arm_mean": M.mean_ci(list(a.values()))["mean"], "baseline_mean": M.mean_ci(list(b.values()))["mean"], "note": None}
    if metric == "cycles_to_zero_error":
        censored = [arms[x]["cycles_to_zero_error"]["censored"] for x in (arm, baseline)]
        if any(censored):
            out["note"] = (f"censored seeds (arm {censored[0]}, baseline {censored[1]}) count as the budget of "
                           f"{arms[arm]['cycles_to_zero_error']['budget']} cycles")
        if all(arms[x]["cycles_to_zero_error"]["censored"] == len(arms[x]["seeds"]) for x in (arm, baseline)):
            out.update(relative_change=None, ci95=None, note="no seed of either arm reached the target")
    return out


MIN_SEEDS_FOR_CLAIM = 3


def verdict(claim: Claim, cmp: Mapping[str, Any] | None, arms: Sequence[str]) -> tuple[str, str]:
    """Reproduced when the whole 95% interval of the relative change lies on the claimed side of
    zero and reaches the claimed size (or, for a direction-only claim, just the side)."""
    missing = [x for x in (claim.arm, claim.baseline) if x not in arms]
    if missing:
        return NOT_MEASURABLE, f"the bench has no finished {' or '.join(missing)} run"
    assert cmp is not None
    if cmp.get("note") == "no seed of either arm reached the target":
        return NOT_MEASURABLE, "no seed of either arm reached the target within the cycle budget"
    if cmp["relative_change"] is None:
        return NOT_MEASURABLE, "undefined: the baseline mean is 0 or a side has no value"
    if cmp["ci95"] is None or cmp["ci95"][0] is None:
        return NOT_MEASURABLE, "one seed per arm: no confidence interval (run more seeds)"
    n = min(cmp["n_arm"], cmp["n_baseline"])
    if n < MIN_SEEDS_FOR_CLAIM:  # a resampled interval over 2 seeds can collapse to a point
        return NOT_MEASURABLE, f"{n} seeds per arm: a verdict needs at least {MIN_SEEDS_FOR_CLAIM} (run more seeds)"
    lo, hi = sorted(claim.direction * x for x in cmp["ci95"])  # effect size in the claimed direction
    ci = f"95% CI [{cmp['ci95'][0]:+.1%}, {cmp['ci95'][1]:+.1%}]"
    if hi < 0:
        return NOT_REPRODUCED, f"{ci}: the effect goes the opposite way"
    if lo <= 0:
        return NOT_REPRODUCED, f"{ci} includes no change"
    if claim.value is not None and hi < claim.direction * claim.value:
        return NOT_REPRODUCED, f"{ci}: in the claimed direction but smaller than the claimed {claim.value:+.0%}"
    return REPRODUCED, f"{ci} lies on the claimed side" + ("" if claim.value is None else
                                                           f" and reaches the claimed {claim.value:+.0%}")


def comparisons(arms: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Every arm vs the baseline on the headline metrics, plus each paper claim's own pair (an
    arm that keeps no replay buffer is left out of the buffer comparison)."""
    pairs = [(m, a, BASELINE) for a in arms if a != BASELINE and BASELINE in arms for m in HEADLINE]
    pairs += [(c.metric, c.arm, c.baseline) for c in CLAIMS
              if c.baseline != BASELINE and c.arm in arms and c.baseline in arms]
    no_buffer = {a for a, v in arms.items() if not any(v["buffer_occupancy_max"]["per_seed"])}  # cocos: no replay
    out = []
    for metric, arm, base in pairs:
        if metric == "buffer_occupancy_max" and {arm, base} & no_buffer:
            continue
        cmp = compare(arms, metric, arm, base)
        claim = next((c for c in CLAIMS if (c.metric, c.arm, c.baseline) == (metric, arm, base)), None)
        cmp["paper_claim"] = claim.value if claim else None
        if claim:
            cmp["claim"] = f"{claim.source}: {claim.text}"
            cmp["verdict"], cmp["reason"] = verdict(claim, cmp, list(arms))
        out.append(cmp)
    return out


def claims_table(arms: Mapping[str, Mapping[str, Any]], cmps: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Every published claim with this run's measurement and verdict (claims whose arms did
    not run say so)."""
    rows = []
    for c in CLAIMS:
        cmp = next((x for x in cmps if (x["metric"], x["arm"], x["baseline"]) == (c.metric, c.arm, c.baseline)), None)
        v, why = (cmp["verdict"], cmp["reason"]) if cmp else verdict(c, None, list(arms))
        rows.append({"source": c.source, "claim": c.text, "metric": c.metric, "arm": c.arm, "baseline": c.baseline,
                     "claimed_relative_change": c.value, "direction": "decrease" if c.direction < 0 else "increase",
                     "measured_relative_change": cmp["relative_change"] if cmp else None,
                     "ci95": cmp["ci95"] if cmp else None, "verdict": v, "reason": why})
    return rows
