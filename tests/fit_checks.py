"""Assertions of optimisation-dependent tests written as numbers, so that the margin by
which a fit passes can be measured over seeds (benchmarks/fit_margins.py) as well as
asserted (the tests). A test whose fit passes on some seeds only is fragile: rounding
that differs between machines moves a few-hundred-step fit as much as a new seed does."""

from __future__ import annotations

from typing import Callable, NamedTuple


class Check(NamedTuple):
    """One assertion: `value <= limit`, or `value >= limit` where `at_least`."""

    name: str
    value: float
    limit: float
    at_least: bool = False

    @property
    def holds(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    @property
    def margin(self) -> float:
        """How far from failing: the slack as a fraction of the limit (1: value 0, 0: on
        the edge, < 0: failed), or the plain slack for a limit of (nearly) 0."""
        slack = self.value - self.limit if self.at_least else self.limit - self.value
        return slack / abs(self.limit) if abs(self.limit) > 1e-9 else slack

    @property
    def sense(self) -> str:
        return ">=" if self.at_least else "<="


def at_most(name: str, value, limit) -> Check:
    return Check(name, float(value), float(limit))


def at_least(name: str, value, floor) -> Check:
    return Check(name, float(value), float(floor), at_least=True)


def within(name: str, value, target, tolerance, *, relative: bool = False) -> Check:
    """|value - target| <= tolerance (times |target| when relative)."""
    scale = abs(float(target)) if relative else 1.0
    return Check(name, abs(float(value) - float(target)) / scale, float(tolerance))


def assert_checks(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.holds]
    assert not failed, "; ".join(f"{c.name} = {c.value:.4g}, wanted {c.sense} {c.limit:.4g}" for c in failed)


# Each test module with such fits names them here for the margins script:
# FITS = {"name": function(seed) -> list[Check]}.
Fits = dict[str, Callable[[int], list[Check]]]
