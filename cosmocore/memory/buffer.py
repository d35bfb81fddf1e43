"""Prioritised replay with the Dream Queue and the Prune Bin (CosmoCore paper, section 3.2).

Each entry is one stored episode (its tokens and log-probs stay in the Delta ``episodes`` table;
the buffer holds only what sampling needs). ``ReplayBuffer`` is the index of ``replay_index``
(priorities, bins, eviction, pruning; its rules are listed there) plus how it is replayed and
checkpointed. Rules, every constant a ``BufferConfig`` field:

* ``sample``: proportional PER, ``P(i) ∝ p_i^alpha * m_i`` with ``m_i = 5`` for Dream Queue
  members (sampled at 5x the baseline rate) and 1 otherwise; importance weights
  ``w_i = (N P(i))^-beta`` normalised by the batch maximum, beta annealed linearly to 1.
* ``sample_nocturnal``: 80% of each minibatch priority-proportional from the Dream Queue, 20%
  uniform over the whole buffer. A minibatch takes at most ``dream_max_draws_per_member`` times
  the queue's size from it (so a tiny queue does not fill a whole minibatch with copies); the
  shortfall is drawn priority-proportionally from the whole buffer and reported in
  ``Batch.dream_shortfall``. Importance weights use the exact mixture probability.
* ``save``/``rebuild``: the index is checkpointed to the store's ``buffer_state`` table and
  rebuilt from it plus the episodes appended after it, with nothing lost or duplicated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cosmocore.memory.config import BufferConfig
from cosmocore.memory.replay_index import BIN_NAMES, DREAM, DREAM_VIEW, MAIN, MAIN_VIEW, PRUNE, ReplayIndex
from cosmocore.memory.schemas import BUFFER_STATE_SCHEMA

if TYPE_CHECKING:
    from cosmocore.memory.store import Store

SOURCE_DREAM, SOURCE_UNIFORM, SOURCE_FILL, SOURCE_PER = 0, 1, 2, 3


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


class ReplayBuffer(ReplayIndex):
    """In-memory replay index (priorities, bins) over episodes stored in Delta."""

    def __init__(self, config: BufferConfig | None = None, seed: int | None = None) -> None:
        super().__init__(config)
        self.rng = np.random.default_rng(seed)
        self.draws = 0

    def beta(self) -> float:
        c = self.config
        return c.beta0 + (1.0 - c.beta0) * min(1.0, self.draws / max(1, c.beta_anneal_draws))

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

    # -- persistence ---------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The index as ``buffer_state`` rows: live entries, removed ids, and one meta row."""
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
