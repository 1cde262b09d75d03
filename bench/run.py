"""Head-to-head benchmark of fastwsgi against other WSGI servers.

    python -m bench                 full suite -> bench/results/
    python -m bench --smoke         quick check -> bench/results-smoke/
    python -m bench --baseline HEAD~1 --server fastwsgi --scenario hello
                                    the work tree against the commit before
    python bench/run.py --help      the same, run as a script

See bench/README.md for the method and the meaning of every column.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):
    # Run as a script (python bench/run.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import envs, paths, report, revision, system, tls
from bench.model import NOT_APPLICABLE, OK, ScenarioResult
from bench.scenarios import SCENARIOS
from bench.servers import OURS, SERVERS, ServerSpec, baseline_spec
from bench.suite import RunDir, Settings, Suite, say

FULL = {"duration": 5, "warmup": 2, "rounds": 3, "idle_conns": 10000}
SMOKE = {"duration": 1, "warmup": 0, "rounds": 1, "idle_conns": 1000}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="1 s per scenario, one round, only fastwsgi, bjoern and nginx; "
                        "results to bench/results-smoke/; exit 1 if fastwsgi fails")
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS), metavar="NAME",
                   help="run only this scenario (repeatable); default: all")
    p.add_argument("--server", action="append", metavar="LABEL",
                   help="run only this server (repeatable), e.g. fastwsgi, bjoern, nginx")
    p.add_argument("--reference",
                   help="server the ratios are computed against (default: the baseline "
                        "with --baseline, else bjoern); 'baseline' names the baseline")
    p.add_argument("--baseline", metavar="REV",
                   help="also run fastwsgi as it was at git revision REV (hash, HEAD~1, "
                        "tag), built into bench/.venv-baseline and labelled "
                        "fastwsgi@<short hash>; rebuilt only when REV's hash changes")
    p.add_argument("--rounds", type=int, help=f"rounds (default {FULL['rounds']})")
    p.add_argument("--duration", type=int, help=f"seconds per run (default {FULL['duration']})")
    p.add_argument("--warmup", type=int, help=f"warm-up seconds (default {FULL['warmup']})")
    p.add_argument("--idle-conns", type=int,
                   help=f"connections in the idle and tls-idle scenarios "
                        f"(default {FULL['idle_conns']})")
    p.add_argument("--pypy", action="store_true",
                   help="also run fastwsgi and the peers that support it under /usr/bin/pypy3")
    p.add_argument("--out", type=Path, help="results directory (default bench/results)")
    p.add_argument("--venv", type=Path, default=paths.DEFAULT_VENV,
                   help="main bench virtualenv (default bench/.venv)")
    p.add_argument("--python", help="interpreter for the CPython venvs (default: this one)")
    p.add_argument("--reinstall", action="store_true",
                   help="retry every pip install, also ones that failed before")
    p.add_argument("--skip-install", action="store_true",
                   help="use the virtualenvs as they are (no pip, no apt)")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the run directory (server logs, configs)")
    p.add_argument("--list", action="store_true", help="list scenarios and servers, then exit")
    args = p.parse_args(argv)
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or args.idle_conns < 1:
        p.error("--rounds and --duration must be >= 1, --warmup >= 0, --idle-conns >= 1")
    if args.out is None:
        args.out = paths.SMOKE_RESULTS_DIR if args.smoke else paths.RESULTS_DIR
    if args.smoke and args.out.resolve() == paths.RESULTS_DIR.resolve():
        p.error("--smoke never writes to bench/results/")
    args.baseline_rev = None
    if args.baseline is not None:
        try:
            args.baseline_rev = revision.resolve(args.baseline)
        except revision.RevisionError as exc:
            p.error(f"--baseline {args.baseline}: {exc}")
    try:
        args.reference = pick_reference(args.reference, args.baseline_rev)
    except ValueError as exc:
        p.error(str(exc))
    return args


def pick_reference(given: str | None, base: revision.Revision | None) -> str:
    """The reference's label; 'baseline' and fastwsgi@<any name of the
    baseline's commit> both mean the --baseline server."""
    if given is None:
        return base.label if base is not None else "bjoern"
    if given != "baseline" and not given.startswith(revision.LABEL_PREFIX):
        return given
    if base is None:
        raise ValueError(f"--reference {given} needs --baseline REV")
    if given in ("baseline", base.label):
        return base.label
    try:
        named = revision.resolve(given[len(revision.LABEL_PREFIX):])
    except revision.RevisionError as exc:
        raise ValueError(f"--reference {given}: {exc}") from exc
    if named.commit != base.commit:
        raise ValueError(f"--reference {given} is not the --baseline revision "
                         f"({base.label}); only one revision runs at a time")
    return base.label


def pick_servers(args: argparse.Namespace) -> list[ServerSpec]:
    """The servers to run. With --baseline its server always runs, right
    after fastwsgi, whatever --server says."""
    base: revision.Revision | None = args.baseline_rev
    chosen = [s for s in SERVERS if not args.smoke or s.in_smoke]
    if args.server:
        known = {s.label for s in SERVERS}
        if base is not None:
            known |= {"baseline", base.label}
        unknown = [name for name in args.server if name not in known]
        if unknown:
            raise SystemExit(f"unknown server(s): {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}"
                             + ("" if base is not None else " (and baseline with --baseline)"))
        chosen = [s for s in chosen if s.label in args.server]
    cpython = [s for s in chosen if not s.is_nginx]
    if base is not None:
        at = next((i + 1 for i, s in enumerate(cpython) if s.label == OURS), 0)
        cpython.insert(at, baseline_spec(base.label))
    pypy = [s.pypy_variant() for s in cpython if s.on_pypy] if args.pypy else []
    return cpython + pypy + [s for s in chosen if s.is_nginx]


def wanted_requirements(specs: list[ServerSpec], scenarios: list[str],
                        chart: bool) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for spec in specs:
        if spec.venv is None or spec.requirement is None:
            continue
        reqs = wanted.setdefault(spec.venv, [])
        extra = [n for name in scenarios for n in SCENARIOS[name].needs]
        for req in (spec.requirement, *extra):
            if req not in reqs:
                reqs.append(req)
    if chart:
        wanted.setdefault("main", []).append("matplotlib")
    return wanted


def install_table(specs: list[ServerSpec], venvs: dict[str, envs.Venv],
                  debs: dict[str, str], wanted: dict[str, list[str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for spec in specs:
        if spec.is_nginx:
            table[spec.label] = debs.get("nginx", "ok") if shutil.which("nginx") \
                else f"not installed: {debs.get('nginx', 'nginx not found')}"
        else:
            assert spec.venv is not None and spec.requirement is not None
            venv = venvs[spec.venv]
            table[spec.label] = venv.why_not(spec.requirement) if venv.error is None \
                else f"not installed: {venv.error}"
    for key, reqs in wanted.items():
        for req in reqs:
            if req in ("flask", "matplotlib"):
                table[f"{req} ({key} venv)"] = venvs[key].why_not(req)
    return table


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so every finally: block stops its servers.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    base: revision.Revision | None = args.baseline_rev
    if args.list:
        for scen in SCENARIOS.values():
            print(f"scenario {scen.name:12} {scen.description}")
        for spec in SERVERS + ([baseline_spec(base.label)] if base is not None else []):
            print(f"server   {spec.label:18} venv={spec.venv or 'Debian'}"
                  f"{' smoke' if spec.in_smoke else ''}{' pypy' if spec.on_pypy else ''}"
                  f"{' multi' if spec.multi else ''}{' threaded' if spec.threaded else ''}"
                  f"{' tls' if spec.tls is not None or spec.is_nginx else ''}")
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    if base is not None:
        envs.add_revision(base.label, base.commit)
        say(f"baseline {base.label}: {base.describe()}")
    scenario_names = args.scenario or [name for name, scen in SCENARIOS.items()
                                       if scen.in_smoke or not args.smoke]
    specs = pick_servers(args)
    # Smoke skips matplotlib (the slowest install); so does a run of only
    # scenarios kept out of the chart (e.g. the multi-* and fairness rows).
    charted = any(SCENARIOS[name].bar and SCENARIOS[name].kind == "load"
                  for name in scenario_names)
    chart = not args.smoke and charted

    nofile = system.raise_nofile_limit()
    debs = {} if args.skip_install else system.ensure_debs(
        ["wrk"] + (["nginx"] if any(s.is_nginx for s in specs) else [])
        + (["openssl"] if any(SCENARIOS[n].tls for n in scenario_names) else []), say)
    if shutil.which("wrk") is None:
        say(f"wrk is required: {debs.get('wrk', 'not found')}")
        return 2

    venvs = envs.make_venvs(args.venv, args.python)
    manager = envs.EnvManager(say, args.reinstall, args.skip_install)
    wanted = wanted_requirements(specs, scenario_names, chart)
    for key, reqs in wanted.items():
        say(f"preparing {venvs[key].path.name}: {', '.join(reqs)}")
        manager.prepare(venvs[key], reqs)
    debs.update(manager.debs)
    installs = install_table(specs, venvs, debs, wanted)
    for label, status in installs.items():
        say(f"  {label}: {status}")
    say(f"setup took {time.monotonic() - started:.0f} s")

    settings = Settings(args.duration, args.warmup, args.rounds, args.reference,
                        args.idle_conns, nofile)
    if args.reference not in {s.label for s in specs}:
        say(f"note: reference {args.reference!r} is not among the servers run; "
            "ratios against it stay empty")
    tmp = Path(tempfile.mkdtemp(prefix="fastwsgi-bench-"))
    results: list[ScenarioResult] = []
    try:
        suite = Suite(settings, specs, venvs, debs, RunDir(tmp))
        for name in scenario_names:
            say(f"scenario {name}")
            t0 = time.monotonic()
            results.append(suite.run(SCENARIOS[name]))
            say(f"  {name} took {time.monotonic() - t0:.0f} s")
    finally:
        if args.keep_tmp:
            say(f"run directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    pythons = {key: str(v.python) for key, v in venvs.items()
               if key in wanted and v.python.exists()}
    meta: dict[str, Any] = {
        "mode": "smoke" if args.smoke else "full",
        "reference": args.reference,
        "machine": system.machine_info(pythons),
        "settings": {"duration": args.duration, "warmup": args.warmup,
                     "rounds": args.rounds, "idle_conns": args.idle_conns,
                     "scenarios": scenario_names, "servers": [s.label for s in specs]},
        "installs": installs,
        "tls": tls.DESCRIPTION if any(SCENARIOS[n].tls for n in scenario_names) else None,
        "baseline": None if base is None else {
            "label": base.label, "revision": base.given, "commit": base.commit,
            "subject": base.subject, "venv": str(venvs["baseline"].path),
            "against": revision.work_tree(),
        },
    }
    main_venv = venvs["main"]
    if not chart:
        chart_python, why = None, ("no chart in smoke mode" if args.smoke
                                   else "no chart: no charted scenario was run")
    elif main_venv.ok("matplotlib"):
        chart_python, why = main_venv.python, ""
    else:
        chart_python, why = None, f"no chart: matplotlib {main_venv.why_not('matplotlib')}"
    notes = report.write(args.out, meta, results, chart_python, why)
    for note in notes:
        say(note)
    say(f"results in {args.out} ({time.monotonic() - started:.0f} s in all)")
    print(report.summary_table(meta["reference"], results))
    return exit_code(results)


def exit_code(results: list[ScenarioResult]) -> int:
    """1 when fastwsgi (CPython) failed or could not run any scenario."""
    bad = []
    for scen in results:
        res = scen.by_label(OURS)
        if res is not None and res.status not in (OK, NOT_APPLICABLE):
            bad.append(f"{scen.name}: {res.status} {res.reason}".strip())
    for line in bad:
        say(f"fastwsgi {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
