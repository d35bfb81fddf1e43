"""Prioritised replay with the Dream Queue and the Prune Bin (CosmoCore paper, section 3.2).

Each entry is one stored episode (its tokens and log-probs stay in the Delta ``episodes`` table;
the buffer holds only what sampling needs). Rules, every constant a ``BufferConfig`` field:

* Priority ``p = |TD| + lam * |valence| * arousal + eps`` (lam = 0.6). New entries start at the
  running maximum priority (PER), so every episode is replayed at least once soon after arrival.
* Bins. Dream Queue ("cringe"): ``|v| > 0.5 and a > 0.7``. Prune Bin (routine):
  ``|v| < 0.2*s and a < 0.3*s`` where ``s`` is the pruning strength (1.0 = the paper's gates).
  Everything else is the main bin. Bins are recomputed whenever valence, arousal or ``s`` change.
* ``sample``: proportional PER, ``P(i) ∝ p_i^alpha * m_i`` with ``m_i = 5`` for Dream Queue
  members (sampled at 5x the baseline rate) and 1 otherwise; importance weights
  ``w_i = (N P(i))^-beta`` normalised by the batch maximum, beta annealed linearly to 1.
* ``sample_nocturnal``: 80% of each minibatch priority-proportional from the Dream Queue, 20%
  uniform over the whole buffer. A minibatch takes at most ``dream_max_draws_per_member`` times
  the queue's size from it (so a tiny queue does not fill a whole minibatch with copies); the
  shortfall is drawn priority-proportionally from the whole buffer and reported in
  ``Batch.dream_shortfall``. Importance weights use the exact mixture probability.
* ``prune``: Prune Bin members are deleted unless their policy entropy exceeds 0.3.
* ``tune_pruning``: confidence variance under 0.1 (a confident, settled policy) raises the
  strength by one step, otherwise it relaxes one step toward the floor; the paper states only
  the raising half, so the relaxing half is our choice (set ``prune_strength_min`` to pin it).
  Every call is logged in ``prune_log``.
* Capacity 10^6; when full, the lowest-priority entries are evicted (ties: oldest first).
* ``save``/``rebuild``: the index is checkpointed to the store's ``buffer_state`` table and
  rebuilt from it plus the episodes appended after it, with nothing lost or duplicated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cosmocore.memory.config import BufferConfig

if TYPE_CHECKING:
    from cosmocore.memory.store import Store

EMPTY, MAIN, DREAM, PRUNE = -1, 0, 1, 2
BIN_NAMES = {MAIN: "main", DREAM: "dream", PRUNE: "prune"}
BIN_CODES = {v: k for k, v in BIN_NAMES.items()}
SOURCE_DREAM, SOURCE_UNIFORM, SOURCE_FILL, SOURCE_PER = 0, 1, 2, 3
MAIN_VIEW, DREAM_VIEW = 0, 1


class SumTree:
    """Sum tree over ``parts`` equal leaf ranges in one flat numpy array, vectorised over a batch.

    Hand-written because no library fits: cpprb's sum tree is reachable only through its own
    FIFO-evicting buffer (we need rank-based eviction, arbitrary slot writes and two weighted
    views) and is a dev-only dependency; TorchRL's compiled one fails to load beside torch 2.13
    CPU; ``numpy.random.choice(p=...)`` is O(N) per draw. Speed comes from walking a whole batch
    down the tree together (one numpy call per level and step) and from cutting the tree at level
    ``top``: the 2^top subtree roots are searched with one ``cumsum`` + ``searchsorted``, so no
    update ever touches the levels above them. Part ``k`` (the main view, the Dream Queue view)
    owns leaves ``[k*S, (k+1)*S)``, so one ``set`` call updates both views of a slot.
    """

    def __init__(self, capacity: int, parts: int = 1, top: int = 14) -> None:
        if parts & (parts - 1):
            raise ValueError("parts must be a power of two")
        self.part_size = 1 << max(1, int(np.ceil(np.log2(max(2, capacity)))))
        self.parts = parts
        self.n_leaves = parts * self.part_size
        self.depth = int(np.log2(self.n_leaves))
        self.top = min(top, self.depth)
        self.roots_per_part = (1 << self.top) // parts
        self.tree = np.zeros(2 * self.n_leaves, dtype=np.float64)

    def _roots(self, part: int) -> np.ndarray:
        lo = (1 << self.top) + part * self.roots_per_part
        return self.tree[lo : lo + self.roots_per_part]

    def total(self, part: int = 0) -> float:
        return float(self._roots(part).sum())

    def leaves(self, idx: np.ndarray, part: int = 0) -> np.ndarray:
        return self.tree.take(np.asarray(idx, dtype=np.int64) + (self.n_leaves + part * self.part_size))

    def set(self, idx: np.ndarray, weights: np.ndarray | float) -> None:
        """Set leaves (global index ``part*part_size + slot``) and recompute their ancestors.

        Duplicate indices are harmless: a parent is recomputed from its children, never
        incremented, so no round-off accumulates either.
        """
        t = self.tree
        i = np.asarray(idx, dtype=np.int64) + self.n_leaves
        if i.size == 0:
            return
        t[i] = weights
        if i.size > self.n_leaves >> 6:  # bulk write: recomputing whole levels is cheaper
            for level in range(self.depth - 1, self.top - 1, -1):
                lo, hi = 1 << level, 1 << (level + 1)
                np.add(t[2 * lo : 2 * hi : 2], t[2 * lo + 1 : 2 * hi : 2], out=t[lo:hi])
            return
        for _ in range(self.depth - self.top):
            i >>= 1
            left = i << 1
            t[i] = t.take(left) + t.take(left + 1)

    def sample(self, n: int, rng: np.random.Generator, part: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
        """``n`` stratified draws proportional to the weights of ``part``: (slots, weights, total)."""
        roots = self._roots(part)
        cs = np.cumsum(roots)
        total = float(cs[-1])
        if n <= 0 or total <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0), total
        u = (np.arange(n) + rng.random(n)) * (total / n)
        idx, w = self._find(u, cs, roots, part)
        bad = w <= 0  # float round-off can land on an empty leaf: redraw those few
        while bad.any():
            idx[bad], w[bad] = self._find(rng.random(int(bad.sum())) * total, cs, roots, part)
            bad = w <= 0
        return idx, w, total

    def _find(self, u: np.ndarray, cs: np.ndarray, roots: np.ndarray, part: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.tree
        j = np.searchsorted(cs, u, side="right")
        np.minimum(j, len(roots) - 1, out=j)
        u = u - (cs[j] - roots[j])
        i = j + ((1 << self.top) + part * self.roots_per_part)
        for _ in range(self.depth - self.top):
            i <<= 1
            left = t.take(i)
            right = u >= left
            u -= left * right
            i += right
        return i - (self.n_leaves + part * self.part_size), t.take(i)


@dataclass
class Batch:
    """One replay minibatch. ``weights`` are the PER importance weights (max 1)."""

    slots: np.ndarray
    ids_by_slot: np.ndarray = field(repr=False)  # the buffer's slot -> episode_id array
    weights: np.ndarray
    probs: np.ndarray
    source: np.ndarray  # SOURCE_* per draw
    seq: np.ndarray  # insertion sequence, so a stale update after eviction is ignored
    beta: float
    dream_shortfall: int = 0

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def episode_ids(self) -> list[str]:
        """Episode ids of the draws (looked up on demand: a trainer keyed by slot never pays for it)."""
        return self.ids_by_slot[self.slots].tolist()


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already live, or removed earlier
    evicted: list[str] = field(default_factory=list)


class ReplayBuffer:
    """In-memory replay index (priorities, bins) over episodes stored in Delta."""

    def __init__(self, config: BufferConfig | None = None, seed: int | None = None) -> None:
        self.config = cfg = config or BufferConfig()
        n = cfg.capacity
        self.rng = np.random.default_rng(seed)
        self.priority = np.zeros(n, dtype=np.float64)
        self.td_error = np.zeros(n, dtype=np.float64)
        self.valence = np.zeros(n, dtype=np.float32)
        self.arousal = np.zeros(n, dtype=np.float32)
        self.entropy = np.zeros(n, dtype=np.float32)
        self.bin = np.full(n, EMPTY, dtype=np.int8)
        self.seq = np.full(n, -1, dtype=np.int64)
        self.ids = np.empty(n, dtype=object)
        self.slot_of: dict[str, int] = {}
        self.removed: dict[str, str] = {}  # episode_id -> "pruned" | "evicted"
        self._free = np.arange(n - 1, -1, -1, dtype=np.int64)  # stack; pops from the end
        self._n_free = n
        # part MAIN_VIEW: p^alpha * (dream_rate if dream else 1); part DREAM_VIEW: p^alpha if dream else 0
        self.tree = SumTree(n, parts=2)
        self._live_cache: np.ndarray | None = None
        self._n_dream: int | None = None
        self.next_seq = 0
        self.max_priority = cfg.initial_max_priority
        self.draws = 0
        self.prune_strength = cfg.prune_strength_init
        self.prune_log: list[dict[str, float]] = []

    # -- bookkeeping ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.slot_of)

    def _bins_changed(self) -> None:
        self._live_cache = None
        self._n_dream = None

    @property
    def dream_size(self) -> int:
        """Members of the Dream Queue now."""
        if self._n_dream is None:
            self._n_dream = int(np.count_nonzero(self.bin == DREAM))
        return self._n_dream

    @property
    def live_slots(self) -> np.ndarray:
        if self._live_cache is None:
            self._live_cache = np.flatnonzero(self.bin >= 0)
        return self._live_cache

    def priority_of(self, td_error: np.ndarray, valence: np.ndarray, arousal: np.ndarray) -> np.ndarray:
        """p = |TD| + lam * |v| * a + eps."""
        return (np.abs(td_error) + self.config.lam * np.abs(valence) * arousal + self.config.priority_eps).astype(
            np.float64
        )

    def bins_of(self, valence: np.ndarray, arousal: np.ndarray) -> np.ndarray:
        """Bin codes from the gates (Dream Queue checked first; the gates cannot overlap at s <= 2)."""
        c, s = self.config, self.prune_strength
        av = np.abs(valence)
        out = np.full(len(av), MAIN, dtype=np.int8)
        out[(av < c.prune_valence * s) & (arousal < c.prune_arousal * s)] = PRUNE
        out[(av > c.dream_valence) & (arousal > c.dream_arousal)] = DREAM
        return out

    def _refresh_trees(self, slots: np.ndarray, priority: np.ndarray | None = None) -> None:
        w = (self.priority.take(slots) if priority is None else priority) ** self.config.alpha
        dream = self.bin.take(slots) == DREAM
        self.tree.set(
            np.concatenate([slots, slots + self.tree.part_size]),
            np.concatenate([w * np.where(dream, self.config.dream_rate, 1.0), w * dream]),
        )

    def beta(self) -> float:
        c = self.config
        return c.beta0 + (1.0 - c.beta0) * min(1.0, self.draws / max(1, c.beta_anneal_draws))

    # -- adding and removing -------------------------------------------------------------------

    def add(
        self,
        episode_ids: Sequence[str],
        td_error: Iterable[float] | None = None,
        valence: Iterable[float] | None = None,
        arousal: Iterable[float] | None = None,
        entropy: Iterable[float] | None = None,
    ) -> AddResult:
        """Admit new episodes at the running max priority; ids seen before are skipped."""
        ids = list(episode_ids)

        def col(x: Iterable[float] | None) -> np.ndarray:
            a = np.zeros(len(ids)) if x is None else np.asarray(list(x) if not isinstance(x, np.ndarray) else x, float)
            return np.nan_to_num(a, nan=0.0)  # null TD / tags: treat as neutral

        td, v, a, h = col(td_error), col(valence), col(arousal), col(entropy)
        result = AddResult()
        keep, seen = [], set()
        for k, eid in enumerate(ids):
            if eid in self.slot_of or eid in self.removed or eid in seen:
                result.skipped.append(eid)
            else:
                seen.add(eid)
                keep.append(k)
        cap = self.config.capacity
        for start in range(0, len(keep), cap):
            chunk = np.asarray(keep[start : start + cap], dtype=np.int64)
            need = len(chunk) - self._n_free
            if need > 0:
                result.evicted.extend(self._evict(need))
            slots = self._free[self._n_free - len(chunk) : self._n_free][::-1].copy()
            self._n_free -= len(chunk)
            new_ids = [ids[k] for k in chunk]
            self.ids[slots] = new_ids
            self.slot_of.update(zip(new_ids, slots.tolist()))
            self.td_error[slots] = td[chunk]
            self.valence[slots] = v[chunk]
            self.arousal[slots] = a[chunk]
            self.entropy[slots] = h[chunk]
            self.priority[slots] = self.max_priority
            self.bin[slots] = self.bins_of(v[chunk], a[chunk])
            self.seq[slots] = np.arange(self.next_seq, self.next_seq + len(chunk))
            self.next_seq += len(chunk)
            self._refresh_trees(slots)
            result.added.extend(new_ids)
        self._bins_changed()
        return result

    def add_table(self, episodes: pa.Table) -> AddResult:
        """Admit rows of the ``episodes`` table (columns episode_id, td_error, valence, arousal, entropy)."""
        def col(name: str) -> np.ndarray | None:
            if name not in episodes.column_names:
                return None
            return episodes.column(name).to_numpy(zero_copy_only=False).astype(float)

        return self.add(
            episodes.column("episode_id").to_pylist(), col("td_error"), col("valence"), col("arousal"), col("entropy")
        )

    def _remove(self, slots: np.ndarray, status: str) -> list[str]:
        if slots.size == 0:
            return []
        gone = self.ids[slots].tolist()
        for eid in gone:
            del self.slot_of[eid]
            self.removed[eid] = status
        self.bin[slots] = EMPTY
        self.ids[slots] = None
        self.seq[slots] = -1
        self.priority[slots] = 0.0
        self.tree.set(np.concatenate([slots, slots + self.tree.part_size]), 0.0)
        self._free[self._n_free : self._n_free + len(slots)] = slots
        self._n_free += len(slots)
        self._bins_changed()
        return gone

    def eviction_order(self, n: int) -> np.ndarray:
        """Slots of the ``n`` lowest-priority live entries, ties broken oldest first (O(N))."""
        live = self.live_slots
        n = min(n, len(live))
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        p = self.priority[live]
        kth = np.partition(p, n - 1)[n - 1]
        below = live[p < kth]
        tied = live[p == kth]
        tied = tied[np.argsort(self.seq[tied], kind="stable")][: n - len(below)]
        chosen = np.concatenate([below, tied])
        return chosen[np.lexsort((self.seq[chosen], self.priority[chosen]))]

    def _evict(self, n: int) -> list[str]:
        return self._remove(self.eviction_order(n), "evicted")

    def prune(self, policy_entropy: float | np.ndarray | None = None) -> list[str]:
        """Delete Prune Bin members unless their policy entropy exceeds ``prune_entropy``.

        Entropy is the one stored with each episode (the policy's mean token entropy when it
        generated it); pass ``policy_entropy`` (a scalar, or one value per live slot in
        ``live_slots`` order) to judge by the current policy instead. Returns the pruned ids.
        """
        live = self.live_slots
        cand = live[self.bin[live] == PRUNE]
        if policy_entropy is None:
            ent = self.entropy[cand]
        elif np.ndim(policy_entropy) == 0:
            ent = np.full(len(cand), float(policy_entropy))
        else:
            ent = np.asarray(policy_entropy, dtype=float)[self.bin[live] == PRUNE]
        return self._remove(cand[ent <= self.config.prune_entropy], "pruned")

    def tune_pruning(self, confidence_variance: float) -> float:
        """Meta-tune pruning strength from the policy's confidence variance; returns the new strength."""
        c = self.config
        if confidence_variance < c.conf_var_threshold:
            s = min(c.prune_strength_max, self.prune_strength + c.prune_strength_step)
        else:
            s = max(c.prune_strength_min, self.prune_strength - c.prune_strength_step)
        changed = s != self.prune_strength
        self.prune_strength = s
        self.prune_log.append({"call": len(self.prune_log), "confidence_variance": float(confidence_variance),
                               "strength": float(s)})
        if changed:
            live = self.live_slots
            self.bin[live] = self.bins_of(self.valence[live], self.arousal[live])
            self._refresh_trees(live)
            self._bins_changed()
        return s

    # -- sampling ------------------------------------------------------------------------------

    def _batch(self, slots: np.ndarray, probs: np.ndarray, source: np.ndarray, shortfall: int = 0) -> Batch:
        beta = self.beta()
        self.draws += 1
        w = (len(self) * probs) ** (-beta)
        w /= w.max()
        return Batch(slots, self.ids, w.astype(np.float32), probs, source, self.seq.take(slots), beta, shortfall)

    def sample(self, batch_size: int) -> Batch:
        """Proportional PER over the whole buffer, Dream Queue members at ``dream_rate`` times."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        slots, w, total = self.tree.sample(batch_size, self.rng, MAIN_VIEW)
        probs = w / total
        return self._batch(slots, probs, np.full(batch_size, SOURCE_PER, dtype=np.int8))

    def sample_nocturnal(self, batch_size: int) -> Batch:
        """The nocturnal phase's minibatch: Dream Queue share by priority, the rest uniform."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        c = self.config
        n_target = int(round(c.dream_fraction * batch_size))
        n_dream = int(min(n_target, self.dream_size * c.dream_max_draws_per_member)) if self.dream_size else 0
        n_fill = n_target - n_dream
        n_uni = batch_size - n_target
        live = self.live_slots
        d, _, dream_total = self.tree.sample(n_dream, self.rng, DREAM_VIEW)
        f, _, main_total = self.tree.sample(n_fill, self.rng, MAIN_VIEW)
        u = live[self.rng.integers(0, len(live), n_uni)]
        slots = np.concatenate([d, u, f])
        source = np.repeat(np.array([SOURCE_DREAM, SOURCE_UNIFORM, SOURCE_FILL], dtype=np.int8), [n_dream, n_uni, n_fill])
        # Probability that one draw of this minibatch's mixture picks each slot (exact IS weights).
        probs = n_uni / batch_size / len(live) + np.zeros(len(slots))
        if n_dream:
            probs += n_dream / batch_size * self.tree.leaves(slots, DREAM_VIEW) / dream_total
        if n_fill:
            probs += n_fill / batch_size * self.tree.leaves(slots, MAIN_VIEW) / main_total
        return self._batch(slots, probs, source, n_fill)

    def draw_probabilities(self, slots: np.ndarray, nocturnal: bool) -> np.ndarray:
        """Chance that one draw of ``sample`` (or ``sample_nocturnal``) picks each slot: the
        arm's replay distribution, to condition on a subset (``sample_among``)."""
        main = self.tree.leaves(slots, MAIN_VIEW) / max(self.tree.total(MAIN_VIEW), 1e-300)
        if not nocturnal:
            return main
        c = self.config
        probs = (1.0 - c.dream_fraction) / len(self.live_slots) + np.zeros(len(slots))
        if self.dream_size:
            return probs + c.dream_fraction * self.tree.leaves(slots, DREAM_VIEW) / self.tree.total(DREAM_VIEW)
        return probs + c.dream_fraction * main  # no Dream Queue: its share is filled by priority

    def sample_among(self, episode_ids: Sequence[str], batch_size: int, nocturnal: bool = False) -> Batch:
        """``batch_size`` draws from the arm's replay distribution restricted to ``episode_ids``
        (the failures, for corrective steps): the same number for every arm, and within them
        the arm's own preferences (a Dream Queue member 5x as often as its peers)."""
        slots = np.array([self.slot_of[i] for i in dict.fromkeys(episode_ids) if i in self.slot_of], dtype=np.int64)
        if len(slots) == 0:
            raise ValueError("none of the given episodes is in the replay buffer")
        probs = self.draw_probabilities(slots, nocturnal)
        probs = probs / probs.sum() if probs.sum() > 0 else np.full(len(slots), 1.0 / len(slots))
        pick = self.rng.choice(len(slots), size=batch_size, p=probs)
        dream = self.bin.take(slots[pick]) == DREAM
        source = np.where(dream, SOURCE_DREAM, SOURCE_UNIFORM if nocturnal else SOURCE_PER).astype(np.int8)
        return self._batch(slots[pick], probs[pick], source)

    # -- replay feedback -----------------------------------------------------------------------

    def update_priorities(
        self, batch: Batch, td_errors: np.ndarray, arousal: np.ndarray | None = None
    ) -> int:
        """New TD errors (and optionally arousal) after a replay; stale draws are ignored."""
        ok = self.seq.take(batch.slots) == batch.seq
        fresh = bool(ok.all())  # the usual case: skip the masking copies
        slots = batch.slots if fresh else batch.slots[ok]
        td = np.asarray(td_errors, dtype=np.float64)
        self.td_error[slots] = td if fresh else td[ok]
        if arousal is not None:
            ar = np.asarray(arousal, dtype=np.float32)
            self.arousal[slots] = ar if fresh else ar[ok]
            self.bin[slots] = self.bins_of(self.valence[slots], self.arousal[slots])
            self._n_dream = None
        p = self.priority_of(self.td_error.take(slots), self.valence.take(slots), self.arousal.take(slots))
        self.priority[slots] = p
        if p.size:
            self.max_priority = max(self.max_priority, float(p.max()))
        self._refresh_trees(slots, p)
        return len(slots)

    def update_priorities_by_id(
        self, episode_ids: Sequence[str], td_errors: np.ndarray, arousal: np.ndarray | None = None
    ) -> int:
        """As ``update_priorities`` for episodes named by id (ids no longer live are ignored)."""
        slots = np.array([self.slot_of.get(e, -1) for e in episode_ids], dtype=np.int64)
        ok = slots >= 0
        fake = Batch(slots[ok], self.ids, np.ones(0), np.ones(0), np.ones(0), self.seq[slots[ok]], 0.0)
        return self.update_priorities(fake, np.asarray(td_errors)[ok], None if arousal is None else np.asarray(arousal)[ok])

    # -- reporting -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        live = self.live_slots
        p = self.priority[live]
        qs = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
        names = ("min", "p25", "p50", "p75", "p90", "p99", "max")
        quant = dict(zip(names, np.quantile(p, qs).tolist())) if p.size else dict.fromkeys(names)
        counts = np.bincount(self.bin[live], minlength=3) if live.size else np.zeros(3, int)
        return {
            "entries": int(len(live)),
            "capacity": self.config.capacity,
            "bins": {BIN_NAMES[k]: int(counts[k]) for k in (DREAM, PRUNE, MAIN)},
            "priority_quantiles": quant,
            "max_priority": self.max_priority,
            "beta": self.beta(),
            "draws": self.draws,
            "prune_strength": self.prune_strength,
            "removed": {"pruned": sum(1 for s in self.removed.values() if s == "pruned"),
                        "evicted": sum(1 for s in self.removed.values() if s == "evicted")},
        }

    def memory_bytes(self) -> int:
        """Bytes held by the index: numpy arrays, both trees, and the id strings and maps."""
        arrays = (self.priority, self.td_error, self.valence, self.arousal, self.entropy, self.bin, self.seq,
                  self.ids, self._free, self.tree.tree)
        total = sum(a.nbytes for a in arrays)
        total += sum(sys.getsizeof(e) for e in self.slot_of)  # the strings (shared with self.ids)
        total += sys.getsizeof(self.slot_of) + sys.getsizeof(self.removed)
        total += sum(sys.getsizeof(e) for e in self.removed)
        return total

    # -- persistence ---------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The index as ``buffer_state`` rows: live entries, removed ids, and one meta row."""
        from cosmocore.memory.store import BUFFER_STATE_SCHEMA

        live = self.live_slots
        live = live[np.argsort(self.seq[live])]
        n_rem = len(self.removed)
        meta = json.dumps({
            "config": asdict(self.config), "next_seq": self.next_seq, "max_priority": self.max_priority,
            "draws": self.draws, "prune_strength": self.prune_strength, "prune_log": self.prune_log,
        })
        nan = np.full(n_rem + 1, np.nan)

        def cat(x: np.ndarray) -> pa.Array:
            return pa.array(np.concatenate([x.astype(np.float64), nan]), pa.float64(), from_pandas=True)

        return pa.table(
            {
                "episode_id": self.ids[live].tolist() + list(self.removed) + [""],
                "status": ["live"] * len(live) + list(self.removed.values()) + ["meta"],
                "seq": pa.array(self.seq[live].tolist() + [None] * (n_rem + 1), pa.int64()),
                "priority": cat(self.priority[live]),
                "td_error": cat(self.td_error[live]),
                "valence": cat(self.valence[live]),
                "arousal": cat(self.arousal[live]),
                "entropy": cat(self.entropy[live]),
                "bin": [BIN_NAMES[b] for b in self.bin[live].tolist()] + [None] * (n_rem + 1),
                "meta": pa.array([None] * (len(live) + n_rem) + [meta], pa.string()),
                "checkpoint_at": pa.nulls(len(live) + n_rem + 1, pa.timestamp("us", tz="UTC")),
            },
            schema=BUFFER_STATE_SCHEMA,
        )

    def save(self, store: Store) -> int:
        """Checkpoint the index into the store; returns the ``buffer_state`` table version."""
        return store.save_buffer_state(self.to_arrow())

    def _restore(self, state: pa.Table) -> None:
        status = state.column("status").to_numpy(zero_copy_only=False)
        meta_rows = np.flatnonzero(status == "meta")
        if len(meta_rows):
            meta = json.loads(state.column("meta")[int(meta_rows[0])].as_py())
            self.max_priority = float(meta["max_priority"])
            self.draws = int(meta["draws"])
            self.prune_strength = float(meta["prune_strength"])
            self.prune_log = list(meta["prune_log"])
            self.next_seq = int(meta["next_seq"])
        ids = state.column("episode_id").to_numpy(zero_copy_only=False)
        for i in np.flatnonzero((status == "pruned") | (status == "evicted")):
            self.removed[ids[i]] = status[i]
        live_rows = state.filter(pc.equal(state.column("status"), "live")).sort_by("seq")
        n = live_rows.num_rows
        if n > self.config.capacity:
            raise ValueError(f"checkpoint holds {n} live entries, more than capacity {self.config.capacity}")
        slots = self._free[self._n_free - n : self._n_free][::-1].copy()
        self._n_free -= n
        new_ids = live_rows.column("episode_id").to_pylist()
        self.ids[slots] = new_ids
        self.slot_of.update(zip(new_ids, slots.tolist()))
        for name in ("priority", "td_error", "valence", "arousal", "entropy", "seq"):
            getattr(self, name)[slots] = live_rows.column(name).to_numpy(zero_copy_only=False)
        self.bin[slots] = self.bins_of(self.valence[slots], self.arousal[slots])
        self._bins_changed()
        self._refresh_trees(slots)

    @classmethod
    def rebuild(cls, store: Store, config: BufferConfig | None = None, seed: int | None = None,
                state_version: int | None = None) -> ReplayBuffer:
        """The index after a restart: the last checkpoint (or the one at ``buffer_state`` table
        version ``state_version``) plus the episodes appended since.

        Entries live at the checkpoint come back with their priorities; ids it records as pruned
        or evicted stay out; episodes it has never seen are admitted (oldest first) as on arrival.
        """
        buf = cls(config, seed)
        state = store.load_buffer_state(state_version)
        if state is not None:
            buf._restore(state)
        episodes = store.read_episodes(
            columns=["episode_id", "td_error", "valence", "arousal", "entropy", "created_at"]
        ).sort_by([("created_at", "ascending"), ("episode_id", "ascending")])
        known = set(buf.slot_of) | set(buf.removed)
        if known:
            mask = pc.invert(pc.is_in(episodes.column("episode_id"), pa.array(list(known), pa.string())))
            episodes = episodes.filter(mask)
        buf.add_table(episodes)
        return buf
