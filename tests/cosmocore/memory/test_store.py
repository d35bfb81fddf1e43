"""Delta trajectory store: real Delta tables in temporary directories."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from cosmocore.memory.schemas import EPISODES_SCHEMA, SCHEMA_VERSION_KEY
from cosmocore.memory.store import Store, StoreError
from miniworld.checks import OUTCOMES

SPAWN = mp.get_context("spawn")  # forking after deltalake's runtime started hangs


def episode(i: int | str, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "episode_id": f"ep-{i}",
        "run_id": "run-1",
        "arm": "cosmocore",
        "seed": 0,
        "cycle": 1,
        "task_id": f"task-{i}",
        "family": "orders",
        "bug_class": "wrong_join_key",
        "turn": 1,
        "prompt": "fix it",
        "completion": "df.join(x, 'id')",
        "prompt_ids": [1, 2, 3],
        "completion_ids": [4, 5],
        "behaviour_logprobs": [-0.5, -0.25],
        "entropy": 0.4,
        "outcome": OUTCOMES[int(str(i).split("-")[-1]) % len(OUTCOMES)] if str(i).split("-")[-1].isdigit() else "correct",
        "checks_passed": 2,
        "checks_total": 3,
        "reward": 0.5,
        "valence": -0.3,
        "arousal": 0.6,
        "td_error": 0.2,
        "priority": 0.3,
        "bin": "main",
        "model_version": "v0",
    }
    row.update(over)
    return row


def test_append_is_idempotent_by_episode_id(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    assert store.append_episodes([episode(i) for i in range(10)]) == 10
    # a retried write plus new rows, with a duplicate inside the batch itself
    batch = [episode(i) for i in range(5, 15)] + [episode(14, reward=-1.0)]
    assert store.append_episodes(batch) == 5
    assert store.append_episodes([episode(i) for i in range(15)]) == 0
    ids = store.read_episodes(columns=["episode_id"]).column("episode_id").to_pylist()
    assert sorted(ids) == sorted(f"ep-{i}" for i in range(15))
    # within a batch the first occurrence wins
    row = store.read_episodes(episode_ids=["ep-14"]).to_pylist()[0]
    assert row["reward"] == 0.5


def test_round_trip_keeps_types_and_utc_timestamps(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    store.append_episodes([episode(1, created_at=when), episode(2)])
    table = store.read_episodes()
    assert table.schema == EPISODES_SCHEMA
    rows = {r["episode_id"]: r for r in table.to_pylist()}
    assert rows["ep-1"]["created_at"] == when
    assert rows["ep-1"]["prompt_ids"] == [1, 2, 3]
    assert rows["ep-1"]["behaviour_logprobs"] == [-0.5, -0.25]
    assert rows["ep-2"]["created_at"] is not None  # defaulted to now, UTC
    assert rows["ep-2"]["created_at"].utcoffset() == dt.timedelta(0)


def test_tables_stay_at_minimal_protocol(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    store.append_episodes([episode(i) for i in range(3)])
    for name in ("episodes", "evaluations", "labels", "buffer_state"):
        table = DeltaTable(str(tmp_path / "s" / name))
        proto = table.protocol()
        assert (proto.min_reader_version, proto.min_writer_version) == (1, 2), name
        assert not proto.reader_features and not proto.writer_features
        assert table.metadata().configuration[SCHEMA_VERSION_KEY] == "1"
        assert "timestamp_ntz" not in str(table.schema().to_arrow())


def test_filters_are_typed_and_quote_safe(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    store.append_episodes([episode(i, cycle=i % 3) for i in range(9)] + [episode("q", task_id="it's")])
    got = store.read_episodes(filters=[("cycle", "=", 2)], columns=["episode_id"])
    assert sorted(got.column("episode_id").to_pylist()) == ["ep-2", "ep-5", "ep-8"]
    got = store.read_episodes(filters=[("task_id", "=", "it's")], columns=["episode_id"])
    assert got.column("episode_id").to_pylist() == ["ep-q"]
    got = store.read_episodes(filters=[("outcome", "in", ["correct", "timeout"]), ("cycle", ">=", 1)])
    assert all(r["outcome"] in ("correct", "timeout") and r["cycle"] >= 1 for r in got.to_pylist())
    assert store.read_episodes(episode_ids=[]).num_rows == 0
    with pytest.raises(ValueError, match="unknown column"):
        store.read_episodes(filters=[("nope; DROP", "=", 1)])


def test_bad_rows_are_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    with pytest.raises(ValueError, match="unknown outcome"):
        store.append_episodes([episode(1, outcome="hallucinated")])
    with pytest.raises(ValueError, match="unknown columns"):
        store.append_episodes([episode(1, rewrad=1.0)])
    with pytest.raises(ValueError, match="must not be null"):
        store.append_episodes([episode(1, episode_id=None)])
    assert store.counts()["episodes"] == 0


def test_open_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(StoreError, match=str(missing)):
        Store.open(missing, create=False)
    Store.open(tmp_path / "s").append_episodes([episode(1)])
    with pytest.raises(StoreError, match="single Delta table"):
        Store.open(tmp_path / "s" / "episodes", create=False)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        Store.open(a_file)


def test_open_refuses_foreign_and_newer_schemas(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    write_deltalake(str(foreign / "episodes"), pa.table({"episode_id": ["a"], "x": [1]}))
    with pytest.raises(StoreError, match="not a CosmoCore table"):
        Store.open(foreign)
    missing_col = tmp_path / "missing_col"
    DeltaTable.create(str(missing_col / "episodes"), pa.schema([pa.field("episode_id", pa.string())]),
                      configuration={SCHEMA_VERSION_KEY: "1"}, raise_if_key_not_exists=False)
    with pytest.raises(StoreError, match="foreign schema: column 'run_id' is missing"):
        Store.open(missing_col)
    newer = tmp_path / "newer"
    Store.open(newer)
    DeltaTable(str(newer / "episodes")).alter.set_table_properties({SCHEMA_VERSION_KEY: "99"}, raise_if_not_exists=False)
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade"):
        Store.open(newer)
    with pytest.raises(StoreError) as info:
        Store.open(newer)
    assert "\n" not in str(info.value) and str(newer) in str(info.value)


def test_labels_evaluations_and_buffer_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    assert store.append_labels([{"label_id": "l1", "episode_id": "ep-1", "kind": "scold"},
                                {"label_id": "l2", "episode_id": "ep-2", "kind": "praise"},
                                {"label_id": "l3", "episode_id": "ep-3", "kind": "valence", "valence": -0.2}]) == 3
    vals = {r["label_id"]: r["valence"] for r in store.read_labels().to_pylist()}
    assert vals == {"l1": -1.0, "l2": 1.0, "l3": -0.2}
    ev = {"eval_id": "run-1/3/task-1/1", "run_id": "run-1", "cycle": 3, "split": "test", "outcome": "correct"}
    assert store.append_evaluations([ev, ev]) == 1
    assert store.append_evaluations([ev]) == 0
    assert store.load_buffer_state() is None
    state = pa.table({"episode_id": ["ep-1", ""], "status": ["live", "meta"], "priority": [0.5, None]})
    v1 = store.save_buffer_state(state)
    v2 = store.save_buffer_state(state.slice(0, 1))
    assert v2 == v1 + 1
    assert store.load_buffer_state().num_rows == 1  # replaced, not appended
    versions = store.versions()
    assert versions["labels"] == 1 and versions["evaluations"] == 1


def test_optimize_and_vacuum_keep_every_row(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    for k in range(6):
        store.append_episodes([episode(10 * k + i) for i in range(10)])
    before = sorted(store.read_episodes(columns=["episode_id"]).column("episode_id").to_pylist())
    store.optimize()
    removed = store.vacuum(retention_hours=0)
    assert removed["episodes"] >= 6  # the small pre-compaction files are gone
    after = sorted(store.read_episodes(columns=["episode_id"]).column("episode_id").to_pylist())
    assert before == after and len(after) == 60
    assert len(DeltaTable(str(tmp_path / "s" / "episodes")).file_uris()) == 1


# -- several processes -------------------------------------------------------------------------


def _append_worker(uri: str, worker: int, n_batches: int) -> None:
    store = Store.open(uri, create=False)
    for b in range(n_batches):
        # each worker writes its own ids, plus ids shared with every other worker (retried writes)
        own = [episode(f"w{worker}-{b}-{i}") for i in range(8)]
        shared = [episode(f"shared-{b}-{i}") for i in range(4)]
        store.append_episodes(own + shared)


@pytest.mark.slow
def test_concurrent_appenders_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    Store.open(uri)
    workers, n_batches = 3, 4
    procs = [SPAWN.Process(target=_append_worker, args=(uri, w, n_batches)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = Store.open(uri, create=False).read_episodes(columns=["episode_id"]).column("episode_id").to_pylist()
    expected = {f"w{w}-{b}-{i}" for w in range(workers) for b in range(n_batches) for i in range(8)}
    expected |= {f"shared-{b}-{i}" for b in range(n_batches) for i in range(4)}
    assert len(ids) == len(set(ids)), "duplicated episodes"
    assert {i.removeprefix("ep-") for i in ids} == expected


def _killable_writer(uri: str, log_path: str, batch: int, n_batches: int) -> None:
    store = Store.open(uri, create=False)
    with open(log_path, "a") as log:
        for b in range(n_batches):
            store.append_episodes([episode(f"b{b}-{i}", prompt="x" * 2000) for i in range(batch)])
            log.write(f"{b}\n")  # written only after the commit returned
            log.flush()
            os.fsync(log.fileno())


@pytest.mark.slow
def test_sigkill_mid_append_leaves_committed_episodes_intact(tmp_path: Path) -> None:
    uri, log_path = str(tmp_path / "s"), str(tmp_path / "committed.log")
    Store.open(uri)
    batch, n_batches = 200, 400
    proc = SPAWN.Process(target=_killable_writer, args=(uri, log_path, batch, n_batches))
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists(log_path) and len(Path(log_path).read_text().split()) >= 3:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of writing a later batch
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    committed = {int(x) for x in Path(log_path).read_text().split()}
    assert 3 <= len(committed) < n_batches

    store = Store.open(uri, create=False)  # readable after the kill
    ids = store.read_episodes(columns=["episode_id"]).column("episode_id").to_pylist()
    assert len(ids) == len(set(ids))
    batches = {int(i.split("-")[1].removeprefix("b")) for i in ids}
    assert committed <= batches  # every acknowledged batch is there ...
    assert len(batches) <= len(committed) + 1  # ... plus at most the one being acknowledged
    assert len(ids) == batch * len(batches)  # no half-written batch

    # the next run resumes: replaying every batch adds exactly the missing ones
    for b in range(max(batches) + 3):
        store.append_episodes([episode(f"b{b}-{i}", prompt="x" * 2000) for i in range(batch)])
    ids = store.read_episodes(columns=["episode_id"]).column("episode_id").to_pylist()
    assert len(ids) == len(set(ids)) == batch * (max(batches) + 3)


# -- spark backend -----------------------------------------------------------------------------


def _delta_jars() -> list[str]:
    jars = [j for j in os.environ.get("COSMOCORE_DELTA_JARS", "").split(",") if j]
    return jars if jars and all(os.path.exists(j) for j in jars) else []


@pytest.mark.slow
@pytest.mark.skipif(
    not _delta_jars(),
    reason="spark backend: no Delta Lake jars here (delta-spark's wheel ships none and Maven is "
    "unreachable); set COSMOCORE_DELTA_JARS=delta-spark.jar,delta-storage.jar to run it",
)
def test_spark_backend_same_api_same_tables(tmp_path: Path) -> None:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.jars", ",".join(_delta_jars()))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        uri = str(tmp_path / "s")
        store = Store.open(uri, backend="spark", spark=spark)
        assert store.append_episodes([episode(i) for i in range(5)]) == 5
        assert store.append_episodes([episode(i) for i in range(7)]) == 2
        # delta-rs reads what Spark wrote, and the other way round
        rs = Store.open(uri, create=False)
        assert rs.counts()["episodes"] == 7
        rs.append_episodes([episode(9)])
        assert store.read_episodes(filters=[("episode_id", "=", "ep-9")]).num_rows == 1
        assert DeltaTable(uri + "/episodes").protocol().min_writer_version == 2
    finally:
        spark.stop()


def test_a_table_another_opener_is_creating_is_not_foreign(tmp_path: Path) -> None:
    """Two processes opening one new store race to create its tables: a half-made table folder
    of ours must not read as "a directory of other files" (which is refused)."""
    (tmp_path / "s" / "episodes").mkdir(parents=True)
    store = Store.open(tmp_path / "s")
    assert store.read_episodes().num_rows == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        Store.open(tmp_path / "other")


def test_discard_after_drops_one_runs_later_cycles_only(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    store.append_episodes([{**episode(i), "run_id": run, "cycle": c}
                           for i, (run, c) in enumerate([("a", 1), ("a", 2), ("a", 3), ("b", 3), ("a'", 3)])])
    store.append_evaluations([{"eval_id": f"v{c}", "run_id": "a", "cycle": c} for c in (0, 1, 2)])
    assert store.discard_after("a", 1) == {"episodes": 2, "evaluations": 1}
    kept = store.read_episodes(columns=["run_id", "cycle"]).to_pylist()
    assert sorted((r["run_id"], r["cycle"]) for r in kept) == [("a", 1), ("a'", 3), ("b", 3)]
    assert sorted(store.read_evaluations(columns=["cycle"]).column("cycle").to_pylist()) == [0, 1]
