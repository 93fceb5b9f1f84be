"""What every benchmark scenario shares: its outcome (figures, target, verdict), the run's collected results
(printed and written as JSON, which the README's figures come from) and the paired-rounds driver."""

from __future__ import annotations

import json
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

M = TypeVar("M")


@dataclass
class Outcome:
    """What one scenario measured: its headline figures by name, the target they are held to, and whether it
    was met (None for a scenario that only reports figures)."""

    figures: dict[str, float]
    target: str
    ok: bool | None


@dataclass
class Results:
    """Every scenario's outcome in this run, in order."""

    setup: dict[str, str | int | float] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def add(self, name: str, outcome: Outcome) -> None:
        self.outcomes[name] = outcome

    @property
    def failed(self) -> bool:
        return any(o.ok is False for o in self.outcomes.values())

    def summary(self) -> list[str]:
        """One line per scenario: name, verdict, headline figures."""
        lines = []
        for name, outcome in self.outcomes.items():
            shown = ", ".join(f"{k} {v:.3g}" for k, v in outcome.figures.items())
            lines.append(f"  {name:<12} {verdict(outcome.ok):<5} {shown} (target: {outcome.target})")
        return lines

    def write(self, path: Path) -> None:
        path.write_text(
            json.dumps({"setup": self.setup, "scenarios": {k: asdict(v) for k, v in self.outcomes.items()}}, indent=2)
            + "\n"
        )


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else "PASS" if ok else "FAIL"


@dataclass
class Paired(Generic[M]):
    """Alternating rounds of a baseline and the system under test: each round's two measurements."""

    bases: list[M]
    runs: list[M]

    def ratios(self, of: Callable[[M, M], float]) -> list[float]:
        """`of(base, run)` for each round."""
        return [of(b, r) for b, r in zip(self.bases, self.runs, strict=True)]

    def median(self, of: Callable[[M, M], float]) -> float:
        """The median over the rounds of `of(base, run)`: drift on a noisy machine hits both sides of a round."""
        return statistics.median(self.ratios(of))


async def paired_rounds(rounds: int, base: Callable[[], Awaitable[M]], run: Callable[[], Awaitable[M]]) -> Paired[M]:
    """Measure `base` then `run`, `rounds` times: the one driver every comparison in the bench uses."""
    bases, runs = [], []
    for _ in range(rounds):
        bases.append(await base())
        runs.append(await run())
    return Paired(bases, runs)
