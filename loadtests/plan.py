"""The plan of a run: which scenario, at which rate, from when to when, open or closed.

Each scenario gets a step load of ``--steps`` rising rates (``--start-rps`` times
``--step-factor`` at each step, or ``--rates`` as given, times the scenario's
``rate_scale``), held ``duration / steps`` seconds each, one after the other; the first
``settle`` seconds of each step are not counted (the queue of the step before
drains, the new rate sets in). Scenarios follow one another with a pause between them
so that the backlog of one does not fall into the next. The closed-loop comparison
runs the same rates, closed, for one scenario, before the open step loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loadtests.scenarios import SCENARIOS


@dataclass(frozen=True)
class Steps:
    duration_s: float
    """Of each scenario's step load (all its steps)."""
    steps: int = 6
    start_rps: float = 50.0
    step_factor: float = 2.0
    rates: tuple[float, ...] = ()
    """Explicit rates (requests/s) instead of start x factor^k."""
    settle_s: float | None = None
    """Not counted at the start of each step; default a quarter of the step, at most 2 s."""
    pause_s: float = 3.0
    idle_s: float = 2.0

    def rates_of(self, scenario: str) -> list[float]:
        scale = SCENARIOS[scenario].rate_scale
        base = list(self.rates) or [self.start_rps * self.step_factor**k for k in range(self.steps)]
        return [round(r * scale, 3) for r in base]

    @property
    def step_s(self) -> float:
        return self.duration_s / (len(self.rates) or self.steps)

    @property
    def settle(self) -> float:
        return self.settle_s if self.settle_s is not None else min(2.0, self.step_s / 4)


def build(scenarios: list[str], steps: Steps, closed_loop: str | None, **settings: Any) -> dict[str, Any]:
    """The plan the generator's master sends to its workers (times in seconds from the common start)."""
    if steps.settle >= steps.step_s:
        raise ValueError(f"a step of {steps.step_s:g} s is too short to settle for {steps.settle:g} s")
    phases: list[dict[str, Any]] = []
    # First an idle while: what the service spends with no load (its background tasks),
    # so that the cost per request is what a request adds.
    t = steps.idle_s
    # The closed-loop comparison first: after an open step load past its knee the service
    # still works off a backlog for a while, which would fall on the closed loop's steps.
    runs = ([(closed_loop, "closed")] if closed_loop else []) + [(name, "open") for name in scenarios]
    for name, mode in runs:
        for k, rate in enumerate(steps.rates_of(name)):
            phases.append({"id": len(phases), "scenario": name, "mode": mode, "step": k, "rate": rate,
                           "start": round(t, 3), "steady_from": round(t + steps.settle, 3),
                           "end": round(t + steps.step_s, 3)})
            t += steps.step_s
        t += steps.pause_s
    return {"phases": phases, "total_s": round(t, 3), "step_s": steps.step_s, "settle_s": steps.settle,
            "closed_loop": closed_loop, "idle": [0.0, steps.idle_s], **settings}
