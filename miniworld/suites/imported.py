"""A pipeline family that lives in a suite file rather than in ``pipelines/``: a user's own
transformation brought in by ``cosmocore tasks import`` (see :mod:`miniworld.suites.importer`).

It honours the family-module contract of :mod:`pipelines` (``FAMILY``, ``SPEC``, ``INPUTS``,
``KEYS``, ``ORDERED``, ``generate``) plus ``REFERENCE``, the reference source text (a built-in
family's is read with ``inspect.getsource``), so the catalog generates, verifies and caches its
tasks exactly as it does a built-in one's. Its input rows are stored in the suite file itself,
not regenerated at load time: the suite is a frozen artefact, and a later change to the data
generator cannot silently make a kept mutant unobservable.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pipelines
from miniworld import rows


@dataclass(frozen=True)
class ImportedFamily:
    FAMILY: str
    SPEC: str
    INPUTS: dict[str, str]  # argument -> DDL, in parameter order
    KEYS: list[str]
    ORDERED: bool
    REFERENCE: str  # ``def transform(...)`` source
    data: dict[str, dict[str, list[tuple]]]  # dataset kind -> argument -> rows
    origin: str = ""  # "FILE.py:function", for people reading the suite

    def __hash__(self) -> int:  # dict fields: hash by identity of the name (one per suite)
        return hash(self.FAMILY)

    def generate(self, rng: random.Random, kind: str) -> dict[str, list[tuple]]:
        """The stored rows of one dataset kind (``rng`` unused: the data is already fixed)."""
        if kind not in self.data:
            raise KeyError(f"imported family {self.FAMILY!r} has no {kind!r} dataset")
        return {arg: list(self.data[kind][arg]) for arg in self.INPUTS}

    # -- suite-file form -------------------------------------------------------------------
    def to_yaml(self) -> dict[str, Any]:
        """The mapping stored under ``imported: {FAMILY: ...}`` in a suite file."""
        return {"origin": self.origin, "spec": self.SPEC, "inputs": dict(self.INPUTS), "keys": list(self.KEYS),
                "ordered": self.ORDERED, "reference": self.REFERENCE,
                "data": {kind: {arg: rows.encode_rows(r) for arg, r in by_arg.items()}
                         for kind, by_arg in self.data.items()}}

    @classmethod
    def from_yaml(cls, name: str, raw: dict[str, Any]) -> ImportedFamily:
        """Parse one ``imported:`` entry; ValueError names what is missing or wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"imported family {name!r} must be a mapping")
        if name in pipelines.family_names():
            raise ValueError(f"imported family {name!r} has the name of a built-in family")
        missing = [k for k in ("spec", "inputs", "reference", "data") if k not in raw]
        if missing:
            raise ValueError(f"imported family {name!r} lacks {', '.join(missing)}")
        inputs = {str(k): str(v) for k, v in dict(raw["inputs"]).items()}
        data = {str(kind): {arg: rows.decode_rows(by_arg[arg]) for arg in inputs}
                for kind, by_arg in dict(raw["data"]).items()}
        return cls(name, str(raw["spec"]).strip(), inputs, [str(k) for k in raw.get("keys") or []],
                   bool(raw.get("ordered", False)), str(raw["reference"]), data, str(raw.get("origin", "")))
