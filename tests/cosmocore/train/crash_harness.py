"""Test-only fault injection for tests/cosmocore/train/test_crash.py; the product never imports it.

``python tests/cosmocore/train/crash_harness.py train ...`` runs the real ``cosmocore train`` CLI in this process,
and with ``CRASH_AT=POINT:CYCLE`` SIGKILLs the process itself at that point of that cycle:

* ``day``        after the day's first turn ran in the sandbox, before anything is stored
* ``night``      after the night's first optimizer step (episodes stored, checkpoint not)
* ``commit``     inside the MERGE that stores the day's episodes: as soon as its data file is
                 on disk (before the commit lands when the watcher wins), else right after it
* ``checkpoint`` after the replay index was saved, before ``checkpoint.pt`` was replaced

``CRASH_DUMP=FILE`` writes the replay index as it stands right after ``--resume`` restored it;
``CRASH_ENDPOINT`` (JSON of a ``SparkEndpoint``) shares the test session's Spark server instead
of starting one per run (the trainer is what is killed here, not Spark).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def buffer_snapshot(buf) -> dict:
    """The replay index as plain JSON: live entries, removed ids and the scalar state."""
    live = {eid: [float(buf.priority[s]), float(buf.td_error[s]), float(buf.valence[s]), float(buf.arousal[s]),
                  float(buf.entropy[s]), int(buf.bin[s]), int(buf.seq[s])] for eid, s in buf.slot_of.items()}
    return {"live": live, "removed": dict(buf.removed), "max_priority": buf.max_priority, "draws": buf.draws,
            "prune_strength": buf.prune_strength, "next_seq": buf.next_seq}


def _install(point: str, cycle: int) -> None:
    from cosmocore.train import trainer as tr
    from cosmocore.memory.store import Store

    trainer_cls, current = tr.Trainer, {"cycle": -1}

    init = trainer_cls.__init__

    def __init__(self, config, progress=None, sandbox=None):  # noqa: N807
        def watch(phase: str, done: int, total: int) -> None:
            current["cycle"] = self.cycle
            if self.cycle == cycle and done == 1 and phase == point:  # "day" / "night"
                _die()
            if progress is not None:
                progress(phase, done, total)

        init(self, config, watch, sandbox)

    trainer_cls.__init__ = __init__

    append = Store.append_episodes

    def append_episodes(self, rows):
        rows = list(rows)
        if point != "commit" or not rows or rows[0]["cycle"] != cycle:
            return append(self, rows)
        table = Path(self.uri) / "episodes"
        before = set(table.glob("*.parquet"))

        def watcher() -> None:
            while True:
                if set(table.glob("*.parquet")) - before:
                    _die()
                time.sleep(0.0002)

        threading.Thread(target=watcher, daemon=True).start()
        append(self, rows)
        _die()

    Store.append_episodes = append_episodes

    save = tr.ReplayBuffer.save

    def save_buffer(self, store):
        version = save(self, store)
        if point == "checkpoint" and current["cycle"] == cycle:
            _die()
        return version

    tr.ReplayBuffer.save = save_buffer


def _share_endpoint(endpoint: dict) -> None:
    from cosmocore.train import trainer as tr
    from miniworld.sandbox.spark_sandbox import Sandbox
    from miniworld.sandbox.server import SparkEndpoint

    ep = SparkEndpoint(**endpoint)
    tr.Sandbox = lambda spark_remote=None, workers=2, timeout_s=30.0: Sandbox(endpoint=ep, workers=workers,
                                                                              timeout_s=timeout_s)


def _dump_after_resume(path: str) -> None:
    from cosmocore.train import trainer as tr

    resume = tr.Trainer.resume

    def dumping(self) -> bool:
        ok = resume(self)
        if ok:
            Path(path).write_text(json.dumps({"cycle": self.cycle, "buffer": buffer_snapshot(self.buffer)}))
        return ok

    tr.Trainer.resume = dumping


def main() -> None:
    if os.environ.get("CRASH_ENDPOINT"):
        _share_endpoint(json.loads(os.environ["CRASH_ENDPOINT"]))
    if os.environ.get("CRASH_AT"):
        point, cycle = os.environ["CRASH_AT"].split(":")
        _install(point, int(cycle))
    if os.environ.get("CRASH_DUMP"):
        _dump_after_resume(os.environ["CRASH_DUMP"])
    from cosmocore.cli import main as cli

    sys.argv = ["cosmocore", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
