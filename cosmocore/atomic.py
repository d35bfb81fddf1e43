"""Whole-or-nothing file writes: a reader (or a resumed run) never sees half a file.

Hand-written: it is ``os.replace`` of a uniquely named sibling, four lines no library adds value to.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a killed writer leaves no half file; racing writers
    both end with a complete one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
