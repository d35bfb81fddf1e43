"""Configuration for CosmoCore's memory: store, buffer and affective tagger.

Every threshold of the CosmoCore paper (arXiv 2510.18895, sections 3.1-3.3) is a field here with
the paper's value as default, so ablations and sensitivity sweeps are flags, not code changes.
Each field carries its help text in ``metadata["help"]`` (read by CLIs and docs generators).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def option(default: Any, help: str) -> Any:  # noqa: A002 - "help" is the natural name here
    """A dataclass field with its help text kept beside the default."""
    return field(default=default, metadata={"help": help})


def _fmap(factory: Any, help: str) -> Any:  # noqa: A002
    return field(default_factory=factory, metadata={"help": help})


def help_text(cfg: type | object) -> dict[str, str]:
    """Field name -> help text, for CLIs and docs."""
    return {f.name: f.metadata.get("help", "") for f in fields(cfg)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class StoreConfig:
    """How the Delta trajectory store commits."""

    commit_retries: int = option(12, "retries of a commit that lost a race with a concurrent writer")
    backoff_s: float = option(0.05, "first retry back-off in seconds; doubles each retry, with jitter")
    backoff_max_s: float = option(2.0, "cap on one retry back-off in seconds")
    vacuum_retention_hours: int = option(168, "vacuum keeps files younger than this (Delta default 7 days)")


@dataclass(frozen=True)
class BufferConfig:
    """Prioritised replay with the Dream Queue and Prune Bin (paper section 3.2)."""

    capacity: int = option(1_000_000, "maximum transitions held; the lowest priority is evicted first")
    lam: float = option(0.6, "lambda in p = |TD| + lambda * |valence| * arousal")
    alpha: float = option(0.6, "PER exponent: P(i) = p_i^alpha / sum p^alpha (0 = uniform)")
    beta0: float = option(0.4, "PER importance-sampling exponent at the first draw")
    beta_anneal_draws: int = option(100_000, "minibatch draws over which beta is annealed linearly to 1")
    priority_eps: float = option(1e-6, "floor added to priorities so no entry has zero probability")
    initial_max_priority: float = option(1.0, "priority given to new entries before any has been replayed")
    dream_valence: float = option(0.5, "Dream Queue gate: |valence| > this ...")
    dream_arousal: float = option(0.7, "... and arousal > this (the paper's 'cringe' trajectories)")
    dream_rate: float = option(5.0, "Dream Queue members are sampled this many times the baseline rate")
    dream_fraction: float = option(0.8, "nocturnal minibatch share drawn from the Dream Queue (rest uniform)")
    dream_max_draws_per_member: float = option(
        4.0, "a minibatch draws at most this many times the Dream Queue's size from it (our choice: the "
        "paper is silent); beyond that the queue is 'short' and the rest is drawn from the whole buffer")
    prune_valence: float = option(0.2, "Prune Bin gate: |valence| < this * strength ...")
    prune_arousal: float = option(0.3, "... and arousal < this * strength (routine successes)")
    prune_entropy: float = option(0.3, "Prune Bin members with policy entropy above this are kept (exploration)")
    conf_var_threshold: float = option(0.1, "confidence variance under this raises pruning strength")
    prune_strength_init: float = option(1.0, "initial pruning strength (1.0 = the paper's gates)")
    prune_strength_step: float = option(0.1, "pruning-strength change per tuning call")
    prune_strength_min: float = option(1.0, "pruning strength floor (gates never narrower than the paper's)")
    prune_strength_max: float = option(2.0, "pruning strength cap (2.0 keeps the Prune Bin clear of the Dream Queue)")


#: Valence of each outcome before partial credit: the most negative is code that never ran
#: (syntax error) or referenced something that does not exist (the classic hallucination).
DEFAULT_OUTCOME_VALENCE: dict[str, float] = {
    "correct": 1.0,
    "wrong_result": -0.6,
    "runtime_error": -0.8,
    "unknown_reference": -1.0,
    "syntax_error": -1.0,
    "timeout": -0.7,
    "policy_violation": -0.9,
    "resource_limit": -0.7,
}


@dataclass(frozen=True)
class TaggerConfig:
    """Affective tagger (paper section 3.1): MLP 512 -> 128 -> 2."""

    feature_dim: int = option(512, "input width of the tagger MLP (the paper's 512)")
    hidden_dim: int = option(128, "hidden width of the tagger MLP (the paper's 128)")
    lr: float = option(1e-3, "Adam learning rate for the tagger")
    weight_decay: float = option(1e-4, "L2 regularisation (coupled weight decay in Adam)")
    epochs: int = option(50, "passes over the tagged episodes per fit")
    batch_size: int = option(256, "tagger minibatch size")
    outcome_valence: dict[str, float] = _fmap(
        lambda: dict(DEFAULT_OUTCOME_VALENCE), "valence of each outcome before partial credit"
    )
    partial_credit: float = option(0.6, "failed outcomes gain this * checks_passed/checks_total valence")
    scold_mode: str = option("override", "'override': a human label replaces the valence target; 'augment': blends")
    scold_weight: float = option(2.0, "augment mode: weight of the human label against the execution valence")
    exec_dropout: float = option(0.5, "share of training rows whose execution block is zeroed, so the tagger also tags unexecuted code")
    arousal_ema: float = option(0.99, "decay of the running mean |TD| that normalises arousal")
    min_fit_examples: int = option(64, "the tagger's readings replace the self-supervised targets only once it has "
                                   "been fitted on this many episodes: fitted on a handful it can tag a failure "
                                   "with positive valence and keep the Dream Queue empty")
    seed: int = option(0, "seed of the fixed projection of hidden states to the feature")
    num_threads: int = option(1, "torch intra-op threads while the tagger fits (a 66k-parameter MLP gains nothing "
                          "from more, and on a busy machine their spin-waits cost far more than they give)")
