"""Small statistics over samples: median, nearest-rank percentiles, and their formatting."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in (0, 1]) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    median: float
    p95: float
    max: float
    min: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan)
        return cls(
            count=len(samples),
            median=statistics.median(samples),
            p95=percentile(samples, 0.95),
            max=max(samples),
            min=min(samples),
        )

    def ms(self, digits: int = 2) -> str:
        """`median / p95 / max` of samples in seconds, shown in milliseconds."""
        values = (self.median, self.p95, self.max)
        return " / ".join(f"{value * 1000:.{digits}f}" for value in values)

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "median": self.median, "p95": self.p95,
                "max": self.max, "min": self.min}  # fmt: skip


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
