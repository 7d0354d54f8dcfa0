"""Sets of addresses as sorted lists of half-open ``(start, end)`` spans.

Used wherever page sets get large (a pre-copy of 1 GiB is 262144 pages):
the restore target's mapped and written areas, the pages a migration source
has sent. Every function takes spans in any order, possibly overlapping, and
returns sorted, merged spans; nothing here allocates per page.
"""

from __future__ import annotations

import bisect
from typing import Sequence

PAGE = 4096
Span = tuple[int, int]  # [start, end)


def union(a: Sequence[Span], b: Sequence[Span] = ()) -> list[Span]:
    """Sorted, merged spans covering *a* and *b*."""
    out: list[Span] = []
    for lo, hi in sorted([*a, *b]):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """The parts of *a* not covered by *b*."""
    cut = union(b)
    out: list[Span] = []
    j = 0
    for lo, hi in union(a):
        while j < len(cut) and cut[j][1] <= lo:
            j += 1
        k = j
        while lo < hi:
            if k >= len(cut) or cut[k][0] >= hi:
                out.append((lo, hi))
                break
            if cut[k][0] > lo:
                out.append((lo, cut[k][0]))
            lo = max(lo, cut[k][1])
            k += 1
    return out


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """The parts of *a* also covered by *b*."""
    return subtract(a, subtract(a, b))


def contains(spans: Sequence[Span], addr: int) -> bool:
    """*addr* lies in one of the sorted, merged *spans*."""
    k = bisect.bisect_right(spans, addr, key=lambda s: s[0]) - 1
    return k >= 0 and addr < spans[k][1]


def covers(spans: Sequence[Span], lo: int, hi: int) -> bool:
    """[lo, hi) lies inside one of the sorted, merged *spans*."""
    k = bisect.bisect_right(spans, lo, key=lambda s: s[0]) - 1
    return k >= 0 and hi <= spans[k][1]


def from_runs(runs: Sequence[tuple[int, int]]) -> list[Span]:
    """Spans of (address, pages) runs."""
    return union([(a, a + n * PAGE) for a, n in runs])


def to_runs(spans: Sequence[Span]) -> list[tuple[int, int]]:
    """(address, pages) runs of page-aligned spans."""
    return [(lo, (hi - lo) // PAGE) for lo, hi in spans]


def size(spans: Sequence[Span]) -> int:
    """Bytes covered by sorted, merged *spans*."""
    return sum(hi - lo for lo, hi in spans)
