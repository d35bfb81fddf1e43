"""Pull the candidate program out of a model's reply: the fenced block that defines the entry
function (or the last fenced block, or the bare reply when it has no fence)."""
from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*(?:python|py|pyspark)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_code(reply: str, entry: str = "transform") -> str:
    """The code in ``reply``: a fenced block defining ``entry`` if any, else the last block,
    else the reply itself (models often answer with bare code)."""
    blocks = [b.strip("\n") for b in _FENCE.findall(reply)]
    for block in blocks:
        if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", block, re.M):
            return block.strip() + "\n"
    if blocks:
        return blocks[-1].strip() + "\n"
    return reply.strip() + "\n"
