"""Affective tagger (CosmoCore paper, section 3.1): valence and arousal of a trajectory.

Model: the paper's MLP 512 -> 128 -> 2 (ReLU); ``valence = tanh(o0)`` in [-1, 1] (how bad),
``arousal = sigmoid(o1)`` in [0, 1] (how surprising), both from ONE forward pass (the paper's
snippet runs the MLP twice).

Feature (512 floats, built by ``Featurizer``), in this order:

* ``[0, 501)``: the policy's last-layer hidden states, mean-pooled over the prompt tokens and over
  the completion (code) tokens separately, each L2-normalised (so the scale does not depend on
  the model), concatenated (2*d) and mapped to 501 dims by a fixed, seeded Gaussian projection
  scaled by 1/sqrt(501) (Johnson-Lindenstrauss: distances are kept, nothing is trained, and the
  tagger stays at 66k parameters whatever the policy's width).
* ``[501, 512)``: the execution block: ``executed`` (1.0 after a run, 0.0 before), the execution
  reward, ``checks_passed / checks_total``, and a one-hot of the eight outcomes. Before execution
  (an IDE tagging a candidate) the block is all zeros; training zeroes it on a share
  ``exec_dropout`` of rows so the same weights serve both uses.

Targets are self-supervised from execution (the paper's open question 1):

* valence: the outcome's base valence (``TaggerConfig.outcome_valence``: syntax error and unknown
  reference -1, runtime error -0.8, wrong result -0.6, correct +1 ...) plus
  ``partial_credit * checks_passed/checks_total`` for failures, clipped to [-1, 1]. Human
  "scold" labels from the store's ``labels`` table override it (or blend with it: ``scold_mode``).
* arousal: ``1 - exp(-|TD| / m)`` where TD is the reward minus the trainer's value estimate and
  ``m`` a running mean of |TD|. For exponentially distributed surprises this is their quantile,
  so the paper's gates (a > 0.7, a < 0.3) select roughly the most/least surprising 30%.

Loss: MSE on valence, binary cross-entropy on arousal, L2 regularisation via Adam weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from cosmocore.memory.config import TaggerConfig
from miniworld.checks import OUTCOMES

EXEC_DIM = 3 + len(OUTCOMES)  # executed, reward, pass ratio, outcome one-hot


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the token axis of ``[B, T, d]`` hidden states, counting only unmasked tokens."""
    if mask is None:
        return hidden.mean(dim=-2)
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=-2) / m.sum(dim=-2).clamp_min(1.0)


@dataclass
class Execution:
    """What running a candidate told us; absent before execution."""

    outcomes: Sequence[str]
    rewards: Sequence[float]
    checks_passed: Sequence[int]
    checks_total: Sequence[int]


class Featurizer:
    """Builds the tagger's 512-d feature from pooled policy hidden states and execution results."""

    def __init__(self, hidden_size: int, config: TaggerConfig | None = None) -> None:
        self.config = cfg = config or TaggerConfig()
        self.proj_dim = cfg.feature_dim - EXEC_DIM
        gen = torch.Generator().manual_seed(cfg.seed)
        self.projection = torch.randn(2 * hidden_size, self.proj_dim, generator=gen) / self.proj_dim**0.5

    def __call__(
        self, prompt_pooled: torch.Tensor, code_pooled: torch.Tensor, execution: Execution | None = None
    ) -> torch.Tensor:
        """``[B, d]`` pooled prompt and code states (see ``mean_pool``) -> ``[B, 512]`` features."""
        h = torch.cat([F.normalize(prompt_pooled.float(), dim=-1), F.normalize(code_pooled.float(), dim=-1)], dim=-1)
        z = h @ self.projection
        return torch.cat([z, execution_block(execution, len(z))], dim=-1)


def execution_block(execution: Execution | None, n: int) -> torch.Tensor:
    """The 11 execution features (zeros before execution)."""
    block = torch.zeros(n, EXEC_DIM)
    if execution is None:
        return block
    block[:, 0] = 1.0
    block[:, 1] = torch.tensor([float(r) for r in execution.rewards])
    block[:, 2] = torch.as_tensor(pass_ratio(execution.checks_passed, execution.checks_total), dtype=torch.float32)
    index = {o: k for k, o in enumerate(OUTCOMES)}
    for row, outcome in enumerate(execution.outcomes):
        block[row, 3 + index[outcome]] = 1.0
    return block


def pass_ratio(checks_passed: Sequence[int] | np.ndarray, checks_total: Sequence[int] | np.ndarray) -> np.ndarray:
    passed = np.asarray(checks_passed, dtype=float)
    total = np.asarray(checks_total, dtype=float)
    return np.divide(passed, total, out=np.zeros_like(passed), where=total > 0)


def valence_target(
    outcomes: Sequence[str],
    checks_passed: Sequence[int] | np.ndarray,
    checks_total: Sequence[int] | np.ndarray,
    config: TaggerConfig | None = None,
) -> np.ndarray:
    """Self-supervised valence: outcome base valence plus partial credit for checks passed."""
    cfg = config or TaggerConfig()
    base = np.array([cfg.outcome_valence[o] for o in outcomes], dtype=float)
    failed = np.array([o != "correct" for o in outcomes])
    v = base + failed * cfg.partial_credit * pass_ratio(checks_passed, checks_total)
    return np.clip(v, -1.0, 1.0)


def apply_labels(
    episode_ids: Sequence[str], valence: np.ndarray, labels: pa.Table, config: TaggerConfig | None = None
) -> np.ndarray:
    """Fold human labels (``labels`` table rows: episode_id, valence) into valence targets.

    ``override``: the latest label's valence replaces the target; ``augment``: the target becomes
    ``(v_exec + w * v_label) / (1 + w)``.
    """
    cfg = config or TaggerConfig()
    if labels.num_rows == 0:
        return valence.copy()
    rows = labels.sort_by("created_at").select(["episode_id", "valence"]).to_pylist()
    latest = {r["episode_id"]: r["valence"] for r in rows if r["valence"] is not None}
    out = np.asarray(valence, dtype=float).copy()
    for k, eid in enumerate(episode_ids):
        if eid in latest:
            lv = float(latest[eid])
            if cfg.scold_mode == "override":
                out[k] = lv
            elif cfg.scold_mode == "augment":
                out[k] = (out[k] + cfg.scold_weight * lv) / (1.0 + cfg.scold_weight)
            else:
                raise ValueError(f"unknown scold_mode {cfg.scold_mode!r}")
    return out


class ArousalNormaliser:
    """Arousal = 1 - exp(-|TD| / running mean |TD|): surprise as a quantile, in [0, 1)."""

    def __init__(self, config: TaggerConfig | None = None) -> None:
        self.decay = (config or TaggerConfig()).arousal_ema
        self.mean_abs_td: float | None = None

    def update(self, td_errors: np.ndarray) -> None:
        m = float(np.mean(np.abs(td_errors)))
        if self.mean_abs_td is None:
            self.mean_abs_td = m
        else:
            w = self.decay ** len(td_errors)  # one EMA step per TD, applied in bulk
            self.mean_abs_td = w * self.mean_abs_td + (1 - w) * m

    def __call__(self, td_errors: np.ndarray, update: bool = True) -> np.ndarray:
        td = np.abs(np.asarray(td_errors, dtype=float))
        if update:
            self.update(td)
        scale = max(self.mean_abs_td or 0.0, 1e-8)
        return 1.0 - np.exp(-td / scale)

    def state_dict(self) -> dict[str, float | None]:
        return {"mean_abs_td": self.mean_abs_td, "decay": self.decay}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.mean_abs_td = state["mean_abs_td"]
        self.decay = float(state["decay"])  # type: ignore[arg-type]


class AffectiveTagger(nn.Module):
    """The paper's 512 -> 128 -> 2 MLP; valence = tanh, arousal = sigmoid, one forward pass."""

    def __init__(self, config: TaggerConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or TaggerConfig()
        self.net = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.hidden_dim), nn.ReLU(), nn.Linear(cfg.hidden_dim, 2))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(features)
        return torch.tanh(out[..., 0]), torch.sigmoid(out[..., 1])

    @torch.no_grad()
    def tag(self, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(valence, arousal) as numpy arrays, without building a graph."""
        was = self.training
        self.eval()
        v, a = self(features)
        self.train(was)
        return v.numpy().astype(float), a.numpy().astype(float)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def parameter_report(self, policy: nn.Module | int) -> dict[str, float]:
        """Tagger size against the policy's (a module or its parameter count)."""
        n_policy = policy if isinstance(policy, int) else sum(p.numel() for p in policy.parameters())
        n = self.parameter_count()
        return {"tagger_parameters": n, "policy_parameters": n_policy, "tagger_over_policy": n / n_policy}

    def fit(
        self,
        features: torch.Tensor,
        valence: np.ndarray | torch.Tensor,
        arousal: np.ndarray | torch.Tensor,
        epochs: int | None = None,
    ) -> list[float]:
        """Train on tagged episodes; returns the mean loss per epoch."""
        cfg = self.config
        v_t = torch.as_tensor(valence, dtype=torch.float32)
        a_t = torch.as_tensor(arousal, dtype=torch.float32)
        opt = torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        history: list[float] = []
        self.train()
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.num_threads)
        try:
            self._epochs(features, v_t, a_t, opt, gen, cfg.epochs if epochs is None else epochs, history)
        finally:
            torch.set_num_threads(threads)
        return history

    def _epochs(
        self,
        features: torch.Tensor,
        v_t: torch.Tensor,
        a_t: torch.Tensor,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        epochs: int,
        history: list[float],
    ) -> None:
        cfg = self.config
        exec_lo = cfg.feature_dim - EXEC_DIM
        for _ in range(epochs):
            order = torch.randperm(len(features), generator=gen)
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                x = features[idx].clone()
                drop = torch.rand(len(idx), generator=gen) < cfg.exec_dropout
                x[drop, exec_lo:] = 0.0
                v, a = self(x)
                loss = F.mse_loss(v, v_t[idx]) + F.binary_cross_entropy(a, a_t[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            history.append(total / len(features))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative examples")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0  # average 1-based rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
