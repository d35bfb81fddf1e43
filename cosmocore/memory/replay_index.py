"""The replay index: which episodes the replay buffer holds, at what priority, in which bin.

Split from the sampler (``buffer``) so admission, eviction and the Prune Bin's rules live apart
from how minibatches are drawn. Rules (CosmoCore paper, section 3.2), every constant a
``BufferConfig`` field:

* Priority ``p = |TD| + lam * |valence| * arousal + eps`` (lam = 0.6). New entries start at the
  running maximum priority (PER), so every episode is replayed at least once soon after arrival.
* Bins. Dream Queue ("cringe"): ``|v| > 0.5 and a > 0.7``. Prune Bin (routine):
  ``|v| < 0.2*s and a < 0.3*s`` where ``s`` is the pruning strength (1.0 = the paper's gates).
  Everything else is the main bin. Bins are recomputed whenever valence, arousal or ``s`` change.
* ``prune``: Prune Bin members are deleted unless their policy entropy exceeds 0.3.
* ``tune_pruning``: confidence variance under 0.1 (a confident, settled policy) raises the
  strength by one step, otherwise it relaxes one step toward the floor; the paper states only
  the raising half, so the relaxing half is our choice (set ``prune_strength_min`` to pin it).
  Every call is logged in ``prune_log``.
* Capacity 10^6; when full, the lowest-priority entries are evicted (ties: oldest first).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from cosmocore.memory.config import BufferConfig
from cosmocore.memory.sumtree import SumTree

EMPTY, MAIN, DREAM, PRUNE = -1, 0, 1, 2
BIN_NAMES = {MAIN: "main", DREAM: "dream", PRUNE: "prune"}
BIN_CODES = {v: k for k, v in BIN_NAMES.items()}
MAIN_VIEW, DREAM_VIEW = 0, 1  # the parts of the sum tree (see ReplayIndex.__init__)


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already live, or removed earlier
    evicted: list[str] = field(default_factory=list)


class ReplayIndex:
    """The entries of the replay buffer: slots, priorities, bins; admission, eviction, pruning."""

    def __init__(self, config: BufferConfig | None = None) -> None:
        self.config = cfg = config or BufferConfig()
        n = cfg.capacity
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

    # -- reporting -----------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        """Bytes held by the index: numpy arrays, both trees, and the id strings and maps."""
        arrays = (self.priority, self.td_error, self.valence, self.arousal, self.entropy, self.bin, self.seq,
                  self.ids, self._free, self.tree.tree)
        total = sum(a.nbytes for a in arrays)
        total += sum(sys.getsizeof(e) for e in self.slot_of)  # the strings (shared with self.ids)
        total += sys.getsizeof(self.slot_of) + sys.getsizeof(self.removed)
        total += sum(sys.getsizeof(e) for e in self.removed)
        return total
