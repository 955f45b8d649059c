"""The three-strike protocol as a table: observations at seconds after ``T0`` fed through
aegis's pure ``decide``, the state carried from one to the next, as the supervisor does
(the unit tests of the strikes and of triage)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aegis.supervision.protocol.strikes import Decision, Observed, Policy, StrikeState, decide

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(strike_interval_s=60, max_restarts_per_hour=3, backoff_s=10,
                backoff_max_s=300, stable_period_s=120, stop_timeout_s=10)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def run(steps: Sequence[tuple[float, Observed]], state: StrikeState | None = None,
        policy: Policy = POLICY) -> list[Decision]:
    """Feed observations at T0+seconds through decide, carrying the state along."""
    state = state or StrikeState()
    decisions = []
    for seconds, observed in steps:
        decision = decide(state, observed, policy, at(seconds))
        decisions.append(decision)
        state = decision.state
    return decisions
