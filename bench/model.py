"""The results, as plain dataclasses that serialise to results.json."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

OK = "ok"
FAIL = "FAIL"
NOT_INSTALLED = "not installed"
NOT_APPLICABLE = "n/a"


@dataclass
class Round:
    rps: float
    requests: int
    cpu_s: float  # server tree CPU seconds during the run
    p50_ms: float | None  # None where wrk's percentiles are not meaningful
    p99_ms: float | None
    socket_errors: int
    non2xx: int


@dataclass
class IdleFigures:
    requested: int
    held: int
    rss_before_kib: int
    rss_after_kib: int
    kib_per_conn: float | None
    fresh_ms: float | None  # median of a few fresh requests while held


@dataclass
class ServerResult:
    label: str
    ours: bool = False
    status: str = OK
    reason: str = ""
    rounds: list[Round] = field(default_factory=list)
    peak_rss_kib: int | None = None
    # Summaries, filled by summarise():
    rps: float | None = None  # median over rounds
    ratio_ref: float | None = None  # median of per-round ratios
    ratio_nginx: float | None = None
    cpu_us_per_req: float | None = None  # all rounds' CPU / all rounds' requests
    p50_ms: float | None = None
    p99_ms: float | None = None
    socket_errors: int = 0
    non2xx: int = 0
    idle: IdleFigures | None = None

    def fail(self, reason: str) -> None:
        self.status = FAIL
        self.reason = reason

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class ScenarioResult:
    name: str
    description: str
    kind: str
    bar: bool
    connections: int
    results: list[ServerResult] = field(default_factory=list)

    def by_label(self, label: str) -> ServerResult | None:
        return next((r for r in self.results if r.label == label), None)


def _per_round_ratio(mine: list[Round], other: ServerResult | None) -> float | None:
    if other is None or not other.ok or not other.rounds:
        return None
    ratios = [a.rps / b.rps for a, b in zip(mine, other.rounds) if b.rps > 0]
    return statistics.median(ratios) if ratios else None


def summarise(scenario: ScenarioResult, reference: str, nginx: str) -> None:
    ref = scenario.by_label(reference)
    ngx = scenario.by_label(nginx)
    for res in scenario.results:
        if not res.ok or not res.rounds:
            continue
        res.rps = statistics.median(r.rps for r in res.rounds)
        requests = sum(r.requests for r in res.rounds)
        if requests:
            res.cpu_us_per_req = sum(r.cpu_s for r in res.rounds) / requests * 1e6
        p50 = [r.p50_ms for r in res.rounds if r.p50_ms is not None]
        p99 = [r.p99_ms for r in res.rounds if r.p99_ms is not None]
        res.p50_ms = statistics.median(p50) if p50 else None
        res.p99_ms = statistics.median(p99) if p99 else None
        res.socket_errors = sum(r.socket_errors for r in res.rounds)
        res.non2xx = sum(r.non2xx for r in res.rounds)
        res.ratio_ref = _per_round_ratio(res.rounds, ref)
        res.ratio_nginx = _per_round_ratio(res.rounds, ngx)
