"""A pool key's occupancy over time, for the HTML report's chart: connections in use, idle and
requests waiting, sampled at each event, with the moments connections were discarded (pool full)
and requests started waiting.

Bounded however long the run: beyond ``POINTS`` samples, neighbours are merged two by two into
the larger of each figure, so a peak is never lost; beyond ``MARKS`` marks, later ones are
counted but not kept.
"""

from __future__ import annotations

from typing import cast

POINTS = 2_000  # samples kept per pool key
MARKS = 1_000  # discard and wait marks kept per pool key
MERGE_AT = 2 * POINTS  # samples that make sample() merge them down to POINTS
# The empty list of a rare kind's samples or marks (discards, waits, drops) before its first:
# an immutable tuple, so a host that never sees one keeps no list of it (its own list is
# made at its first, see ReportSink._sample). Each list the garbage collector tracks, and a
# sweep of many hosts keeps several per host until they are folded: fewer make its young
# collections rarer.
NONE_YET = cast("list[float]", ())


class Occupancy:
    """(time, in use, idle, waiting) samples and event marks of one pool key."""

    __slots__ = ("discards", "marks_left_out", "points", "waits")

    def __init__(self) -> None:
        self.points: list[tuple[float, int, int, int]] = []
        self.discards = NONE_YET  # when a connection was discarded: the pool was full
        self.waits = NONE_YET  # when a request started waiting for a connection
        self.marks_left_out = 0

    def sample(self, now: float, in_use: int, idle: int, waiting: int) -> None:
        # ReportSink.handle() does the same inline (every event takes a sample).
        points = self.points
        points.append((now, in_use, idle, waiting))
        if len(points) >= MERGE_AT:
            self.halve()

    def halve(self) -> None:
        """Merge neighbours two by two, keeping the larger of each figure (at MERGE_AT)."""
        points = self.points
        self.points = [_merge(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)]

    def mark(self, marks: list[float], now: float) -> None:
        if len(marks) < MARKS:
            marks.append(now)
        else:
            self.marks_left_out += 1

    def extend(self, other: Occupancy) -> None:
        """Take in another recorder's or process's samples of the same key."""
        self.points = sorted(self.points + other.points)
        while len(self.points) >= 2 * POINTS:
            pts = self.points
            self.points = [_merge(pts[i], pts[i + 1]) for i in range(0, len(pts) - 1, 2)]
        if other.discards:
            self.discards = sorted([*self.discards, *other.discards])[:MARKS]
        if other.waits:
            self.waits = sorted([*self.waits, *other.waits])[:MARKS]
        self.marks_left_out += other.marks_left_out

    @property
    def peak_in_use(self) -> int:
        return max((p[1] for p in self.points), default=0)


def _merge(
    a: tuple[float, int, int, int], b: tuple[float, int, int, int]
) -> tuple[float, int, int, int]:
    return (a[0], max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
