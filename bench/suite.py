"""Running the scenarios: start, validate, warm up, then measure the servers
in alternating rounds (A B C A B C ...), so that a noisy moment on the shared
machine hits every server alike instead of one of them."""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench import apps, httpcheck, idle, load, model, nginx, procstat, servers, system, tls
from bench.envs import Venv
from bench.model import NOT_APPLICABLE, NOT_INSTALLED, ScenarioResult, ServerResult
from bench.scenarios import BIG_FILE_NAME, FILE_NAME, Scenario
from bench.servers import Running, ServerSpec


@dataclass
class Settings:
    duration: int  # seconds per measured run
    warmup: int  # seconds of unmeasured load per server and scenario
    rounds: int
    reference: str
    idle_conns: int
    nofile: int


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _cpu_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per process key over a run; a process that started during
    it counts from zero, one that ended is gone (as from the tree's total)."""
    return {key: max(cpu - before.get(key, 0.0), 0.0) for key, cpu in after.items()}


def not_applicable(spec: ServerSpec, scenario: Scenario) -> str | None:
    """Why the server takes no part in the scenario; None when it does."""
    if spec.is_nginx:
        return "no nginx equivalent" if scenario.nginx is None else None
    if scenario.tls and spec.tls is None:
        return spec.no_tls
    if scenario.threaded:
        # With the scenario's workers, whether or not spec.multi.
        return None if spec.threaded else "no threaded run in this suite"
    if scenario.workers > 1 and not spec.multi:
        return "no multi-process run in this suite"
    return None


class RunDir:
    """A private directory with the app module, the launcher, served files
    and server logs. Servers run with it as cwd and only entry on PYTHONPATH,
    so they never see the repository's own source tree."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.logs = path / "logs"
        self.files = path / "files"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.files.mkdir(exist_ok=True)
        here = Path(__file__).resolve().parent
        shutil.copy(here / "apps.py", path / "apps.py")
        shutil.copy(here / "launch.py", path / "launch.py")
        (self.files / FILE_NAME).write_bytes(apps.pattern_bytes(apps.FILE_SIZE))
        (self.files / BIG_FILE_NAME).write_bytes(apps.BIG_BODY)
        self.launch = str(path / "launch.py")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
        env.update(PYTHONPATH=str(self.path), PYTHONUNBUFFERED="1",
                   **{apps.FILE_ENV: str(self.files / FILE_NAME)})
        return env


class Suite:
    def __init__(self, settings: Settings, specs: list[ServerSpec], venvs: dict[str, Venv],
                 debs: dict[str, str], rundir: RunDir) -> None:
        self.settings = settings
        self.specs = specs
        self.venvs = venvs
        self.debs = debs
        self.rundir = rundir
        # Servers that never answered: later scenarios do not wait for them
        # again, which keeps a run with a hanging server bounded. Keyed by
        # label and transport: one that never answered over TLS still gets
        # its plain scenarios, and the other way round.
        self.hung: dict[tuple[str, bool], str] = {}
        # The TLS scenarios' certificate, made on first use; or why not.
        self._certificate: tls.Certificate | str | None = None

    def certificate(self) -> tls.Certificate:
        """The run's certificate, made in the run directory the first time
        a TLS scenario needs it; raises TlsSetupError (every time) if it
        cannot be made."""
        if self._certificate is None:
            try:
                self._certificate = tls.make_certificate(self.rundir.path)
                say(f"  TLS certificate: {tls.KEY_TYPE}, self-signed for "
                    f"{tls.SUBJECT_ALT_NAME}")
            except tls.TlsSetupError as exc:
                self._certificate = str(exc)
        if isinstance(self._certificate, str):
            raise tls.TlsSetupError(self._certificate)
        return self._certificate

    # -- availability ---------------------------------------------------
    def unavailable(self, spec: ServerSpec, scenario: Scenario) -> str | None:
        if spec.is_nginx:
            if shutil.which("nginx") is None:
                return f"nginx: {self.debs.get('nginx', 'not found')}"
            return None
        assert spec.venv is not None and spec.requirement is not None
        venv = self.venvs[spec.venv]
        for req in (spec.requirement, *scenario.needs):
            if not venv.ok(req):
                reason = venv.why_not(req)
                if reason.startswith(NOT_INSTALLED):
                    reason = reason[len(NOT_INSTALLED):].lstrip(": ")
                return f"{req}: {reason}"
        return None

    # -- one server -----------------------------------------------------
    def _start(self, spec: ServerSpec, scenario: Scenario) -> Running:
        port = system.free_port()
        tag = spec.label.replace(" ", "_").replace("(", "").replace(")", "")
        log_path = self.rundir.logs / f"{scenario.name}-{tag}.log"
        cert = self.certificate() if scenario.tls else None
        if spec.is_nginx:
            prefix = self.rundir.path / "nginx"
            conf = nginx.write_conf(prefix, port, scenario, self.rundir.files,
                                    self.settings.nofile, cert)
            argv = nginx.command(conf, prefix)
        else:
            assert spec.build is not None and spec.venv is not None
            python = str(self.venvs[spec.venv].python)
            argv = spec.build(python, port, scenario.app_ref, self.rundir.launch,
                              scenario.workers)
            if cert is not None:
                assert spec.tls is not None
                argv += spec.tls(str(cert.cert), str(cert.key))
        return servers.start(spec, argv, port, self.rundir.path, self.rundir.env(), log_path,
                             cpus=scenario.server_cpus, leader_first=scenario.workers > 1,
                             tls=None if cert is None else cert.client_context())

    def _bring_up(self, spec: ServerSpec, scenario: Scenario,
                  result: ServerResult) -> Running | None:
        """Start and validate; on failure record FAIL and leave nothing running."""
        hung_key = (spec.label, scenario.tls)
        if hung_key in self.hung:
            result.fail(f"did not start in {self.hung[hung_key]}; not retried")
            return None
        try:
            server = self._start(spec, scenario)
        except tls.TlsSetupError as exc:
            result.fail(f"no TLS certificate: {exc}")
            return None
        except OSError as exc:
            result.fail(f"could not start: {exc}")
            return None
        try:
            problem = servers.wait_ready(server)
            if problem is not None and server.alive() and not server.tls_refused:
                self.hung[hung_key] = f"{scenario.name} ({problem})"
            if problem is None:
                problem = self._validate(server, scenario)
                if problem is None and server.tls is not None:
                    problem = self._tls_facts(server, result)
                if problem is not None:
                    problem = f"validation: {problem}"
            else:
                problem = f"did not start: {problem}"
        except BaseException:
            servers.stop(server)
            raise
        if problem is not None:
            result.fail(problem)
            servers.stop(server)
            return None
        return server

    @staticmethod
    def _validate(server: Running, scenario: Scenario) -> str | None:
        return httpcheck.validate(server.port, scenario.request(), scenario.check,
                                  pipeline=scenario.pipeline,
                                  expect_close=scenario.expect_close, tls=server.tls)

    @staticmethod
    def _tls_facts(server: Running, result: ServerResult) -> str | None:
        """Record what the server negotiates and whether it resumes a
        session (wrk offers each reconnect its previous session); None,
        or why the check failed."""
        assert server.tls is not None
        try:
            facts = httpcheck.tls_facts(server.port, server.tls)
        except (OSError, httpcheck.HttpError) as exc:
            return f"TLS session check: {exc}"
        result.tls = model.TlsFigures(facts.version, facts.cipher, facts.resumed,
                                      facts.close_notify)
        return None

    def _results(self, scenario: Scenario) -> tuple[list[ServerResult], list[ServerSpec]]:
        results, runnable = [], []
        for spec in self.specs:
            res = ServerResult(spec.label, ours=spec.ours)
            results.append(res)
            why = not_applicable(spec, scenario)
            if why is not None:
                res.status, res.reason = NOT_APPLICABLE, why
                continue
            why = self.unavailable(spec, scenario)
            if why is not None:
                res.status, res.reason = NOT_INSTALLED, why
                continue
            runnable.append(spec)
        return results, runnable

    # -- scenarios ------------------------------------------------------
    def run(self, scenario: Scenario) -> ScenarioResult:
        out = ScenarioResult(scenario.name, scenario.description, scenario.kind,
                             scenario.bar, self.settings.idle_conns
                             if scenario.kind == "idle" else scenario.connections,
                             workers=scenario.workers, tls=scenario.tls)
        out.results, runnable = self._results(scenario)
        by_label = {r.label: r for r in out.results}
        out.reference = self.settings.reference
        ref = by_label.get(out.reference)
        if scenario.fallback_reference and (ref is None or ref.status == NOT_APPLICABLE):
            out.reference = scenario.fallback_reference
        logged: dict[str, dict[int, int]] = {}  # label -> worker pid -> requests
        try:
            if scenario.kind == "idle":
                for spec in runnable:
                    self._idle(spec, scenario, by_label[spec.label])
            else:
                logged = self._load(scenario, runnable, by_label)
        except Exception as exc:
            # A bug in the suite must not cost the other scenarios' results:
            # report it, mark this scenario's unfinished entries, go on.
            traceback.print_exc()
            for spec in runnable:
                res = by_label[spec.label]
                if res.ok:
                    res.fail(f"benchmark error: {type(exc).__name__}: {exc}")
                    res.rounds.clear()
        model.summarise(out, out.reference, servers.NGINX)
        if scenario.kind == "idle":
            model.summarise_idle(out, out.reference)
        if scenario.workers > 1:
            peers = {s.label for s in self.specs if s.is_peer}
            model.summarise_multi(out, peers, logged)
        return out

    def _load(self, scenario: Scenario, runnable: list[ServerSpec],
              by_label: dict[str, ServerResult]) -> dict[str, dict[int, int]]:
        """Warm-up and rounds. Returns, per label, the request count per
        worker pid that a multi-worker server logged when stopped."""
        script = self.rundir.path / f"{scenario.name}.lua"
        script.write_text(load.lua_script(scenario))
        running: list[Running] = []
        try:
            for spec in runnable:
                server = self._bring_up(spec, scenario, by_label[spec.label])
                if server is not None:
                    running.append(server)
            say(f"  {scenario.name}: {len(running)} of {len(by_label)} servers up")
            if self.settings.warmup > 0:
                for server in running:
                    load.run_wrk(server.port, scenario, self.settings.warmup, script)
            for round_no in range(self.settings.rounds):
                for server in list(running):
                    res = by_label[server.spec.label]
                    if not self._measure(server, scenario, script, res):
                        running.remove(server)
                        servers.stop(server)
                say(f"  {scenario.name}: round {round_no + 1}/{self.settings.rounds} "
                    + "  ".join(f"{s.spec.label}={by_label[s.spec.label].rounds[-1].rps:,.0f}"
                                for s in running))
            for server in running:
                res = by_label[server.spec.label]
                res.peak_rss_kib = procstat.peak_rss_kib(server.pid)
                # A last check that the server still answers correctly after load.
                problem = self._validate(server, scenario)
                if problem is not None:
                    res.fail(f"validation after load: {problem}")
        finally:
            for server in running:
                servers.stop(server)
        # Read only now: a master logs its workers' counts as it stops.
        if scenario.workers == 1:
            return {}
        return {s.spec.label: servers.logged_worker_requests(s.log_path) for s in running}

    def _measure(self, server: Running, scenario: Scenario, script: Path,
                 res: ServerResult) -> bool:
        if not server.alive():
            res.fail(f"server died: {server.log_tail()}")
            return False
        # Split by process (summing to the tree's CPU) so that the multi
        # scenarios can tell each worker's part.
        split_before = procstat.cpu_by_child(server.pid)
        wrk, raw = load.run_wrk(server.port, scenario, self.settings.duration, script)
        split_after = procstat.cpu_by_child(server.pid)
        cpu_before, cpu_after = sum(split_before.values()), sum(split_after.values())
        if wrk is None:
            res.fail(f"wrk gave no result: {raw.strip()[-200:]}")
            return False
        if wrk.non2xx:
            res.fail(f"{wrk.non2xx} non-2xx responses")
            return False
        if wrk.requests == 0:
            res.fail(f"no response completed in {self.settings.duration} s "
                     f"({wrk.socket_errors} socket errors)")
            return False
        if not server.alive():
            res.fail(f"server died under load: {server.log_tail()}")
            return False
        by_process = _cpu_deltas(split_before, split_after) if scenario.workers > 1 else {}
        res.rounds.append(model.Round(wrk.rps, wrk.requests, max(cpu_after - cpu_before, 0.0),
                                      wrk.p50_ms, wrk.p99_ms, wrk.socket_errors, wrk.non2xx,
                                      by_process))
        return True

    def _idle(self, spec: ServerSpec, scenario: Scenario, res: ServerResult) -> None:
        t0 = time.monotonic()
        server = self._bring_up(spec, scenario, res)
        if server is None:
            return
        affinity = os.sched_getaffinity(0)
        try:
            # The client side gets the load generator's CPU, like wrk.
            os.sched_setaffinity(0, {1} if 1 in affinity else affinity)
            got = idle.measure(server.port, server.pid, self.settings.idle_conns,
                               tls=server.tls)
            res.peak_rss_kib = procstat.peak_rss_kib(server.pid)
        finally:
            os.sched_setaffinity(0, affinity)
            servers.stop(server)
        res.idle = model.IdleFigures(got.requested, got.held, got.rss_before_kib,
                                     got.rss_after_kib, got.kib_per_conn, got.fresh_ms)
        if got.error:
            res.fail(got.error)
        say(f"  {scenario.name}: {spec.label}: held {got.held}/{got.requested}"
            + (f", {got.kib_per_conn:.2f} KiB/conn" if got.kib_per_conn is not None else "")
            + (f", fresh {got.fresh_ms:.2f} ms" if got.fresh_ms is not None else "")
            + (f" [{got.error}]" if got.error else "")
            + f" ({time.monotonic() - t0:.0f} s)")

