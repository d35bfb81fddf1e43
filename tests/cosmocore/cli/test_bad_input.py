"""Bad input through the real `cosmocore` command: exit 2, one line naming the input, fast (before a
model or Spark is loaded where possible), and nothing already stored changed."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess

ROOT = Path(__file__).resolve().parents[3]
TASK = "orders_enrichment.join_type.0"


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmocore.cli", *args], cwd=ROOT,
                          env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout)


def assert_bad_input(out: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def tree_digest(path: Path) -> str:
    """Content hash of every file under ``path`` (names and bytes): "nothing changed"."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def fix(tmp_path: Path) -> Path:
    path = tmp_path / "fix.py"
    path.write_text("def transform(**kw):\n    return None\n")
    return path


def train(store: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("train", "--model", "tiny", "--suite", "smoke", "--cycles", "1", "--store", str(store),
               "--out", str(out), *extra)


def test_malformed_suite_yaml_names_the_file(tmp_path: Path, fix: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\nfamilies: [orders_enrichment\n")
    assert_bad_input(cli("tasks", "list", "--suite", str(bad)), str(bad), "YAML")
    assert_bad_input(train(tmp_path / "store", tmp_path / "out", "--suite", str(bad)), str(bad))


def test_unknown_task_model_and_arm(tmp_path: Path, fix: Path) -> None:
    assert_bad_input(cli("run", str(fix), "--task", "no.such.task"), "no.such.task")
    assert_bad_input(train(tmp_path / "s1", tmp_path / "o1", "--arm", "telepathy"), "telepathy")
    assert_bad_input(train(tmp_path / "s2", tmp_path / "o2", "--model", str(tmp_path / "no-model")), "no-model")
    assert_bad_input(cli("bench", "--arms", "uniform,telepathy", "--out", str(tmp_path / "b")), "telepathy")


@pytest.mark.parametrize("args", [["bench", "--profile", "nope"], ["bench", "--set", "lr=fast"],
                                  ["train", "--suite", "smoke", "--arm", "telepathy"], ["solve", "--task", "no.such.task"]])
def test_bad_input_is_refused_before_torch_loads(args: list[str]) -> None:
    """A typo costs well under a second: the model code (torch, transformers, TRL) loads only for good input."""
    probe = ("import sys\nfrom cosmocore.cli import main\nsys.argv = ['cosmocore', *sys.argv[1:]]\ntry:\n"
             "    main()\nexcept SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], (out.stdout, out.stderr)


def test_a_directory_of_other_files_is_not_taken_for_a_store(tmp_path: Path) -> None:
    store = tmp_path / "mine"
    store.mkdir()
    (store / "notes.txt").write_text("keep me")
    before = tree_digest(store)
    assert_bad_input(train(store, tmp_path / "out"), str(store), "not empty")
    assert tree_digest(store) == before and sorted(os.listdir(store)) == ["notes.txt"]


def test_foreign_and_newer_delta_tables_are_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    write_deltalake(str(foreign / "episodes"), pa.table({"episode_id": ["a"], "x": [1]}))
    before = tree_digest(foreign)
    assert_bad_input(train(foreign, tmp_path / "o1"), str(foreign), "not a CosmoCore table")
    assert_bad_input(cli("buffer", "stats", "--store", str(foreign)), str(foreign))
    assert tree_digest(foreign) == before
    assert DeltaTable(str(foreign / "episodes")).version() == 0

    from cosmocore.memory.schemas import SCHEMA_VERSION_KEY
    from cosmocore.memory.store import Store

    newer = tmp_path / "newer"
    Store.open(newer)
    DeltaTable(str(newer / "episodes")).alter.set_table_properties({SCHEMA_VERSION_KEY: "99"},
                                                                    raise_if_not_exists=False)
    before = tree_digest(newer)
    assert_bad_input(train(newer, tmp_path / "o2"), "schema version 99", "upgrade")
    assert tree_digest(newer) == before
    single = tmp_path / "single"
    write_deltalake(str(single), pa.table({"a": [1]}))
    assert_bad_input(cli("buffer", "stats", "--store", str(single)), "single Delta table")


def _listen_without_speaking() -> tuple[int, threading.Event]:
    """A TCP port held by a service that is not Spark (accepts, never answers)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        held = []
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue
        for conn in held:
            conn.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], stop


def test_spark_remote_port_refused_or_held_by_another_service(fix: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    out = cli("run", str(fix), "--task", TASK, "--spark-remote", f"sc://127.0.0.1:{free}")
    assert_bad_input(out, f"sc://127.0.0.1:{free}", "cannot connect")
    port, stop = _listen_without_speaking()
    try:
        out = cli("run", str(fix), "--task", TASK, "--spark-remote", f"sc://127.0.0.1:{port}")
    finally:
        stop.set()
    assert_bad_input(out, f"sc://127.0.0.1:{port}", "no Spark Connect")


def test_java_missing_is_one_line_saying_what_to_install(tmp_path: Path, fix: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # no java on it (the interpreter is called by its full path)
    out = cli("run", str(fix), "--task", TASK, env=env)
    assert_bad_input(out, "Java 17+", "openjdk-17-jre-headless")


def test_a_broken_user_suite_names_itself_and_hides_no_other_suite(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("name: mine\nfamilies: [\n")
    env = {**os.environ, "COSMOCORE_SUITES": str(tmp_path)}
    assert cli("tasks", "show", TASK, "--json", env=env).returncode == 0  # found in a built-in suite
    assert_bad_input(cli("tasks", "list", "--suite", "mine", env=env), "mine.yaml")
