"""`python -m rag.search.edge_optimize SHARD`: optimise one Qdrant Edge shard folder and close it.

The child process of `EdgeClient.optimize_beside` (rag/search/edge.py): qdrant-edge-py holds the GIL for the
whole of an optimisation, so the serving process has a copy of its shard optimised here, in a process of its
own, and keeps answering meanwhile. Prints `optimized` or `unchanged` as its last line.
"""

from __future__ import annotations

import sys

import qdrant_edge as edge


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m rag.search.edge_optimize SHARD_FOLDER\n")
        return 2
    shard = edge.EdgeShard.load(argv[0])
    try:
        optimized = bool(shard.optimize())
        shard.flush()
    finally:
        shard.close()
    print("optimized" if optimized else "unchanged", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
