"""The results, as plain dataclasses that serialise to results.json."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.procstat import ROOT_KEY

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
    # Multi-worker scenarios only: cpu_s split by process, "root" for the
    # server's first process and each direct child's pid for its subtree.
    cpu_by_process: dict[str, float] = field(default_factory=dict)


@dataclass
class IdleFigures:
    requested: int
    held: int
    rss_before_kib: int
    rss_after_kib: int
    kib_per_conn: float | None
    fresh_ms: float | None  # median of a few fresh requests while held


@dataclass
class WorkerShare:
    pid: int
    cpu_s: float | None  # over the measured rounds; None: seen only in the log
    cpu_share: float | None  # of all workers' CPU
    requests: int | None = None  # the server's own count at exit (fastwsgi's log)
    request_share: float | None = None  # of all logged requests


@dataclass
class MultiFigures:
    """A multi-worker scenario's extra figures for one server."""

    best_peer: str | None = None  # the peer with the highest req/s in this run
    ratio_best_peer: float | None = None  # median of per-round ratios to it
    req_per_cpu_s: float | None = None  # requests per CPU-second of the whole tree
    # The first process (master, launcher) and any helper process beyond
    # the workers, as a share of the tree's CPU.
    master_cpu_share: float | None = None
    workers: list[WorkerShare] = field(default_factory=list)
    # The least busy worker's share of the workers' CPU in a round, median
    # over rounds: 0.5 is an even split of 2 workers, 0.0 one idle worker.
    min_worker_share: float | None = None


@dataclass
class TlsFigures:
    """What a server negotiated with the validator in a TLS scenario."""

    version: str  # e.g. TLSv1.3
    cipher: str
    resumed: bool  # took back the session of a previous connection
    close_notify: bool  # ended its connections with a close_notify alert

    def describe(self) -> str:
        text = f"{self.version} {self.cipher}, " + (
            "resumes sessions" if self.resumed else "no session resumption")
        return text + ("" if self.close_notify else ", closes without close_notify")


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
    # Median of per-round req/s ratios; in the idle scenarios the ratio
    # of KiB per held connection instead (summarise_idle).
    ratio_ref: float | None = None
    ratio_nginx: float | None = None
    cpu_us_per_req: float | None = None  # all rounds' CPU / all rounds' requests
    p50_ms: float | None = None
    p99_ms: float | None = None
    socket_errors: int = 0
    non2xx: int = 0
    idle: IdleFigures | None = None
    multi: MultiFigures | None = None
    tls: TlsFigures | None = None  # TLS scenarios only

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
    workers: int = 1  # worker processes per server
    tls: bool = False  # served over HTTPS
    # The label `ratio_ref` is against: the run's reference, or the
    # scenario's fallback where the run's one takes no part (TLS rows).
    reference: str = ""

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


def summarise_idle(scenario: ScenarioResult, reference: str) -> None:
    """Idle scenarios: each server's KiB per held connection divided by the
    reference's, in ratio_ref (below 1: less memory per connection). Taken
    whenever both held connections, also when one of them stopped short of
    the count asked for (granian stops accepting at about 1 000): the
    figure is per connection held either way."""
    ref = scenario.by_label(reference)
    base = None if ref is None or ref.idle is None else ref.idle.kib_per_conn
    if base is None or base <= 0:
        return
    for res in scenario.results:
        if res.idle is not None and res.idle.kib_per_conn is not None:
            res.ratio_ref = res.idle.kib_per_conn / base


# -- multi-worker scenarios ----------------------------------------------

def _best_peer(scenario: ScenarioResult, peers: set[str]) -> ServerResult | None:
    candidates = [r for r in scenario.results
                  if r.label in peers and r.ok and r.rps is not None]
    return max(candidates, key=lambda r: r.rps or 0.0, default=None)


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _worker_cpu(rounds: list[Round], workers: int) -> tuple[float, dict[int, float]]:
    """(CPU of the root and helpers, {worker pid: CPU}) summed over rounds.
    The workers are the `workers` children that used the most CPU: a
    server may have helpers beside them (a resource tracker, say), and a
    worker left idle ties with them at zero, so the choice cannot mislead."""
    by_key: dict[str, float] = {}
    for rnd in rounds:
        for key, cpu in rnd.cpu_by_process.items():
            by_key[key] = by_key.get(key, 0.0) + cpu
    children = sorted(((cpu, key) for key, cpu in by_key.items() if key != ROOT_KEY),
                      reverse=True)
    chosen = {int(key): cpu for cpu, key in children[:workers]}
    rest = by_key.get(ROOT_KEY, 0.0) + sum(cpu for cpu, _ in children[workers:])
    return rest, chosen


def _min_worker_share(rounds: list[Round], pids: list[int], workers: int) -> float | None:
    """Per round, the smallest of the workers' shares of their CPU time;
    the median over rounds. A worker the server was asked for but that never
    showed up (fewer children than `workers`) counts as one that did nothing.
    Rounds in which the workers used no CPU at all are left out."""
    shares: list[float] = []
    for rnd in rounds:
        cpu = [rnd.cpu_by_process.get(str(pid), 0.0) for pid in pids]
        cpu += [0.0] * (workers - len(cpu))
        total = sum(cpu)
        if total > 0:
            shares.append(min(cpu) / total)
    return statistics.median(shares) if shares else None


def _worker_shares(rounds: list[Round], workers: int,
                   logged: dict[int, int]) -> tuple[float | None, list[WorkerShare]]:
    rest, cpu = _worker_cpu(rounds, workers)
    cpu_total = sum(cpu.values())
    log_total = sum(logged.values())
    pids = sorted(cpu) + sorted(pid for pid in logged if pid not in cpu)
    shares = [WorkerShare(pid, cpu.get(pid),
                          _share(cpu[pid], cpu_total) if pid in cpu else None,
                          logged.get(pid),
                          _share(logged[pid], log_total) if pid in logged else None)
              for pid in pids]
    return _share(rest, rest + cpu_total), shares


def summarise_multi(scenario: ScenarioResult, peers: set[str],
                    logged: dict[str, dict[int, int]]) -> None:
    """After summarise(): the ratio to the best peer, requests per CPU-second,
    each worker's share and the smallest one. `peers` are the labels that
    count as peers; `logged` holds, per label, the request count per worker
    pid that the server logged at exit (fastwsgi does)."""
    best = _best_peer(scenario, peers)
    for res in scenario.results:
        if not res.ok or not res.rounds:
            continue
        cpu = sum(r.cpu_s for r in res.rounds)
        master_share, workers = _worker_shares(res.rounds, scenario.workers,
                                               logged.get(res.label, {}))
        res.multi = MultiFigures(
            best_peer=best.label if best is not None else None,
            ratio_best_peer=_per_round_ratio(res.rounds, best),
            req_per_cpu_s=_share(sum(r.requests for r in res.rounds), cpu),
            master_cpu_share=master_share,
            workers=workers,
            min_worker_share=_min_worker_share(
                res.rounds, [w.pid for w in workers if w.cpu_s is not None],
                scenario.workers),
        )
