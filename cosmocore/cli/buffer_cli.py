"""``cosmocore buffer ...``: inspect the replay buffer a store holds.

``stats`` rebuilds the index exactly as a restarting trainer would (last ``buffer_state``
checkpoint plus the episodes appended since) and reports rows, bins, priority quantiles and
table versions. Exit 2 with a one-line reason naming the input when the URI is not a store.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from typing import Annotated, Any

import typer

from cosmocore.memory.buffer import ReplayBuffer
from cosmocore.memory.config import BufferConfig
from cosmocore.memory.store import Store, StoreError

buffer_app = typer.Typer(help="Inspect the CosmoCore replay buffer.", no_args_is_help=True)


@buffer_app.callback()
def _group() -> None:
    """Inspect the CosmoCore replay buffer (keeps ``stats`` a subcommand while it is the only one)."""


def _config_from_checkpoint(store: Store) -> BufferConfig:
    """The buffer config saved with the last checkpoint (defaults when none was saved)."""
    state = store.load_buffer_state()
    if state is None:
        return BufferConfig()
    metas = [m for m in state.column("meta").to_pylist() if m]
    saved = json.loads(metas[0]).get("config", {}) if metas else {}
    known = {f.name for f in fields(BufferConfig)}
    return BufferConfig(**{k: v for k, v in saved.items() if k in known})


def buffer_stats(store: Store) -> dict[str, Any]:
    """Everything ``stats`` prints, as one JSON-able dict."""
    buf = ReplayBuffer.rebuild(store, _config_from_checkpoint(store))
    s = buf.stats()
    return {
        "store": store.uri,
        "rows": store.counts(),
        "entries": s["entries"],
        "capacity": s["capacity"],
        "bins": s["bins"],
        "priority_quantiles": s["priority_quantiles"],
        "max_priority": s["max_priority"],
        "prune_strength": s["prune_strength"],
        "removed": s["removed"],
        "versions": store.versions(),
    }


@buffer_app.command()
def stats(
    store: Annotated[str, typer.Option("--store", help="store URI (a directory or object-store URI)")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Rows, bins (dream/prune/main), priority quantiles and table versions of a store."""
    from cosmocore.cli.errors import BadInput, errors

    with errors(as_json):
        try:
            st = Store.open(store, create=False)
        except StoreError as exc:
            raise BadInput(f"--store {exc}", input=store) from None
        out = buffer_stats(st)
    if as_json:
        sys.stdout.write(json.dumps(out) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"replay buffer at {out['store']}", show_header=False)
    table.add_row("entries / capacity", f"{out['entries']} / {out['capacity']}")
    for name, n in out["bins"].items():
        table.add_row(f"bin {name}", str(n))
    for name, q in out["priority_quantiles"].items():
        table.add_row(f"priority {name}", "-" if q is None else f"{q:.4g}")
    table.add_row("prune strength", f"{out['prune_strength']:.2f}")
    for name, n in out["rows"].items():
        table.add_row(f"rows {name}", f"{n} (version {out['versions'][name]})")
    Console().print(table)
