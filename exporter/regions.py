"""Which AWS regions exist, as the installed botocore's partition data (data/partitions.json) lists them, and the
nearest names to a typo. Read from the package, so checking a region makes no network call (a misspelt region would
otherwise surface as a DNS lookup of sts.<typo>.amazonaws.com)."""

from __future__ import annotations

import difflib
import functools

import botocore
import botocore.loaders


@functools.cache
def known_regions() -> frozenset[str]:
    """The regions of every partition in botocore's own partition data (data/partitions.json), pseudo-regions such as
    aws-global left out. Read from the installed botocore, so no name is looked up over the network."""
    partitions = botocore.loaders.create_loader().load_data("partitions")["partitions"]
    return frozenset(r for p in partitions for r in p.get("regions", {}) if not r.endswith("-global"))


def region_problem(region: str) -> str | None:
    """Why `region` is not one botocore knows, with the nearest names; None when it is known."""
    known = known_regions()
    if region in known:
        return None
    close = difflib.get_close_matches(region, sorted(known), n=6, cutoff=0.6)
    nearest = sorted(close, key=lambda name: (_edits(region, name), name))[:3]  # a swap of two letters is one edit
    hint = f"did you mean {' or '.join(nearest)}?" if nearest else "see the AWS region list"
    return (
        f"{region!r} is not a region botocore {botocore.__version__} knows: {hint} (a region newer than botocore "
        "needs a newer bedrock-batch-exporter, or endpoint_url)"
    )


def _edits(a: str, b: str) -> int:
    """Edits from a to b: insertions, deletions, substitutions and swaps of neighbours (optimal string alignment)."""
    rows = [list(range(len(b) + 1))]
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            best = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                best = min(best, rows[-2][j - 2] + 1)
            row.append(best)
        rows.append(row)
    return rows[-1][-1]
