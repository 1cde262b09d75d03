"""Writing the results: results.json (everything), results.md (tables a
reader can scan) and chart.png (drawn by bench/chart.py inside the bench
virtualenv, where matplotlib is installed)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench import paths
from bench.model import OK, MultiFigures, ScenarioResult, ServerResult

CHART_TIMEOUT = 120


def to_json(meta: dict[str, Any], scenarios: list[ScenarioResult]) -> dict[str, Any]:
    return {**meta, "scenarios": [dataclasses.asdict(s) for s in scenarios]}


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "" if value is None else format(value, fmt)


def _ratio(value: float | None) -> str:
    return "" if value is None else f"×{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _name(res: ServerResult) -> str:
    return f"**{res.label}**" if res.ours else res.label


def _status_text(res: ServerResult) -> str:
    return "FAIL" if res.status == "FAIL" else res.status


def _summary_cell(res: ServerResult, ref: str, scen_ref: str) -> str:
    if res.status != OK:
        return _status_text(res)
    # A scenario whose ratios are against another server names it.
    other = f" {scen_ref}" if scen_ref and scen_ref != ref else ""
    if res.idle is not None:
        text = f"{_num(res.idle.kib_per_conn, '.2f')} KiB/conn"
        if res.ratio_ref is not None:
            text += f" ({_ratio(res.ratio_ref)}{other})"
        return text
    text = _num(res.rps)
    if res.ratio_ref is not None:
        text += f" ({_ratio(res.ratio_ref)}{other})"
    return f"**{text}**" if res.ours else text


def _note(res: ServerResult) -> str:
    """The note column: the reason (FAIL, n/a, ...) or, in a TLS row, what
    the server negotiated."""
    if res.status == OK and res.tls is not None:
        return "; ".join(x for x in (res.tls.describe(), res.reason) if x)
    return res.reason


def _labels(scenarios: list[ScenarioResult]) -> list[tuple[str, bool]]:
    seen: dict[str, bool] = {}
    for scen in scenarios:
        for res in scen.results:
            seen.setdefault(res.label, res.ours)
    return list(seen.items())


def _machine_lines(meta: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    pythons = ", ".join(f"{k}: {v}" for k, v in m["pythons"].items())
    s = meta["settings"]
    base = meta.get("baseline")
    tls = [] if not meta.get("tls") else [
        f"TLS rows: {meta['tls']}; {m.get('openssl', 'OpenSSL version unknown')}.", ""]
    baseline = [] if not base else [
        f"Baseline: `{base['label']}` is {base['revision']} = {base['commit']} "
        f"({_cell(base['subject'])}), built into {Path(base['venv']).name}; "
        f"`fastwsgi` is the {base['against']}.", ""]
    return [
        f"{m['date']} · {meta['mode']} run · {s['rounds']} round(s) × {s['duration']} s "
        f"(warm-up {s['warmup']} s) · reference: {meta['reference']}",
        "",
        *baseline,
        f"Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, {m['os']}; "
        f"Python: {pythons}; {m['wrk']}; {m['nginx']}.",
        "",
        *tls,
        "Method: one worker per server pinned to CPU 0, `wrk -t1` pinned to CPU 1; "
        "servers alternate within each round; every ratio is the median of per-round "
        "ratios measured in this same run. CPU µs/req is the server process tree's "
        "user+system time divided by the requests served. A wrong status or body is FAIL. "
        "The multi-* and fairness rows are the exception: 2 worker processes per server, "
        "server and wrk both on CPUs 0-1.",
    ]


def summary_table(ref: str, scenarios: list[ScenarioResult]) -> str:
    names = [s.name for s in scenarios]
    others = any(s.reference and s.reference != ref for s in scenarios)
    out = [f"## Summary: requests/s (median of rounds), × {ref} in brackets"
           + (" (× the server named, where a cell names one)" if others else ""), "",
           "| server | " + " | ".join(names) + " |",
           "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for label, ours in _labels(scenarios):
        cells = []
        for scen in scenarios:
            res = scen.by_label(label)
            cells.append(_summary_cell(res, ref, scen.reference) if res else "")
        out.append(f"| {'**' + label + '**' if ours else label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def markdown(meta: dict[str, Any], scenarios: list[ScenarioResult], chart: bool) -> str:
    ref = meta["reference"]
    out = ["# fastwsgi benchmark results", "", *_machine_lines(meta), ""]
    if chart:
        out += ["![requests per second per scenario](chart.png)", ""]
    out += [summary_table(ref, scenarios), ""]
    for scen in scenarios:
        out += [f"## {scen.name}: {scen.description} ({scen.connections} connections)", ""]
        if scen.kind == "idle":
            out += _idle_table(scen, scen.reference or ref)
        elif scen.workers > 1:
            out += _multi_table(scen, ref)
        else:
            out += _load_table(scen, scen.reference or ref)
        out.append("")
    out += ["## Installs", ""]
    for label, status in meta["installs"].items():
        out.append(f"- {label}: {_cell(status)}")
    return "\n".join(out) + "\n"


def _load_table(scen: ScenarioResult, ref: str) -> list[str]:
    rows = [f"| server | req/s | × {ref} | × nginx | CPU µs/req | p50 ms | p99 ms "
            "| socket errors | peak RSS MiB | note |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for res in scen.results:
        if res.status != OK:
            rows.append(f"| {_name(res)} | {_status_text(res)} | | | | | | | | "
                        f"{_cell(res.reason)} |")
            continue
        rss = None if res.peak_rss_kib is None else res.peak_rss_kib / 1024
        rows.append(
            f"| {_name(res)} | {_num(res.rps)} | {_ratio(res.ratio_ref)} "
            f"| {_ratio(res.ratio_nginx)} | {_num(res.cpu_us_per_req, '.1f')} "
            f"| {_num(res.p50_ms, '.2f')} | {_num(res.p99_ms, '.2f')} "
            f"| {res.socket_errors} | {_num(rss, '.1f')} | {_cell(_note(res))} |")
    return rows


def _percentages(shares: list[float | None]) -> str:
    return " / ".join("?" if x is None else f"{x:.0%}" for x in shares)


def _worker_cells(multi: MultiFigures) -> tuple[str, str]:
    """(CPU share per worker, logged requests per worker with shares)."""
    cpu = _percentages([w.cpu_share for w in multi.workers if w.cpu_s is not None])
    logged = [w for w in multi.workers if w.requests is not None]
    if not logged:
        return cpu, ""
    counts = " / ".join(f"{w.requests:,}" for w in logged)
    return cpu, f"{counts} ({_percentages([w.request_share for w in logged])})"


def _best_peer(scen: ScenarioResult) -> str:
    return next((r.multi.best_peer for r in scen.results
                 if r.multi is not None and r.multi.best_peer), "best peer")


def _multi_table(scen: ScenarioResult, ref: str) -> list[str]:
    rows = [f"| server | req/s | × {_best_peer(scen)} (best peer) | × {ref} "
            "| req per CPU-s | p50 ms | p99 ms | socket errors | peak RSS MiB "
            "| CPU share per worker | min worker share | requests per worker (server log) "
            "| master CPU share | note |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: | --- |"]
    for res in scen.results:
        if res.status != OK or res.multi is None:
            rows.append(f"| {_name(res)} | {_status_text(res)} |" + " |" * 11
                        + f" {_cell(res.reason)} |")
            continue
        multi = res.multi
        cpu_shares, requests = _worker_cells(multi)
        rss = None if res.peak_rss_kib is None else res.peak_rss_kib / 1024
        master = "" if multi.master_cpu_share is None else f"{multi.master_cpu_share:.0%}"
        rows.append(
            f"| {_name(res)} | {_num(res.rps)} | {_ratio(multi.ratio_best_peer)} "
            f"| {_ratio(res.ratio_ref)} | {_num(multi.req_per_cpu_s)} "
            f"| {_num(res.p50_ms, '.2f')} | {_num(res.p99_ms, '.2f')} "
            f"| {res.socket_errors} | {_num(rss, '.1f')} | {cpu_shares} "
            f"| {_num(multi.min_worker_share, '.2f')} | {requests} "
            f"| {master} | {_cell(res.reason)} |")
    return rows


def _idle_table(scen: ScenarioResult, ref: str) -> list[str]:
    rows = [f"| server | connections held | RSS growth KiB/conn | × {ref} KiB/conn "
            "| fresh request ms (target < 5) | RSS before → after MiB | note |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for res in scen.results:
        fig = res.idle
        if fig is None:
            rows.append(f"| {_name(res)} | {_status_text(res)} | | | | | {_cell(res.reason)} |")
            continue
        # Over TLS, what the server negotiated (as in the other TLS rows).
        note = _note(res)
        if res.status == OK and fig.fresh_ms is not None and fig.fresh_ms >= 5:
            note = "; ".join(x for x in (note, "fresh request over the 5 ms target") if x)
        rows.append(
            f"| {_name(res)} | {fig.held} / {fig.requested} | {_num(fig.kib_per_conn, '.2f')} "
            f"| {_ratio(res.ratio_ref)} | {_num(fig.fresh_ms, '.2f')} "
            f"| {fig.rss_before_kib / 1024:.1f} → {fig.rss_after_kib / 1024:.1f} "
            f"| {_status_text(res) + ': ' if res.status != OK else ''}{_cell(note)} |")
    return rows


def write(out_dir: Path, meta: dict[str, Any], scenarios: list[ScenarioResult],
          chart_python: Path | None, no_chart_reason: str = "") -> list[str]:
    """Writes the files; returns notes (e.g. why there is no chart)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(to_json(meta, scenarios), indent=1) + "\n")
    chart_path = out_dir / "chart.png"
    drawn = False
    if chart_python is not None:
        try:
            proc = subprocess.run(
                [str(chart_python), "-m", "bench.chart", str(json_path), str(chart_path)],
                cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=CHART_TIMEOUT,
                check=False, env={**os.environ, "MPLBACKEND": "Agg"},
            )
            drawn = proc.returncode == 0
            if not drawn:
                notes.append(f"chart failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"chart failed: {exc}")
    else:
        notes.append(no_chart_reason or "no chart")
    if not drawn and chart_path.exists():
        chart_path.unlink()  # never leave a chart from an earlier run beside new tables
    (out_dir / "results.md").write_text(markdown(meta, scenarios, drawn))
    return notes
