"""`--shard I/N`: the share of the articles one of N ingest runs takes, so that N machines (or processes) fill one
collection on a Qdrant server with no overlap and no coordinator.

An article belongs to shard `sha256(article id) mod N + 1`: the same on every machine and in every run (Python's
own hash() is salted per process), and independent of file order, so every run can read every file and keep
its own articles. Problems in a file (a bad line) belong to the shard of the name they are reported under, so
that the N runs' reports add up to the report of one unsharded run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int  # 1 … count
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"2/4"` → the second of four shards; ValueError saying what is wrong otherwise."""
        match = _SPEC.match(text)
        if not match:
            raise ValueError(f"--shard {text!r}: write it as I/N, e.g. 1/4 for the first of four runs")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count:
            raise ValueError(f"--shard {text!r}: I must be between 1 and N ({count})")
        return cls(index=index, count=count)

    def holds(self, key: str) -> bool:
        return self.count == 1 or shard_number(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard(index=1, count=1)


def shard_number(key: str, count: int) -> int:
    """The shard (1 … count) that `key` belongs to."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1
