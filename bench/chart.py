"""Draw chart.png from results.json (run inside the bench venv, which has
matplotlib):  python -m bench.chart results.json chart.png

Grouped bars per scenario, one bar per server, log scale (the scenarios span
four orders of magnitude). fastwsgi is the one saturated colour and carries
its ratio against the reference; nginx, the ceiling, is hatched grey; a
server without a number gets an "x" at the foot of its slot (one that
takes no part in a scenario, n/a, leaves its slot empty).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

OURS_COLOUR = "#d6361f"
NGINX_COLOUR = "#555555"
PEER_COLOURS = ["#8fb3d9", "#a6d49f", "#f2c879", "#c3a6d8", "#9fd6d2",
                "#e8a5c4", "#c9c27a", "#d9b38c", "#b0b0d8", "#a8c8a0", "#cccccc"]
PYPY_SUFFIX = " (pypy)"


def _servers(scenarios: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    seen: dict[str, bool] = {}
    for scen in scenarios:
        for res in scen["results"]:
            seen.setdefault(res["label"], bool(res["ours"]))
    return list(seen.items())


def draw(data: dict[str, Any], out: str) -> None:
    scenarios = [s for s in data["scenarios"] if s["bar"] and s["kind"] == "load"]
    if not scenarios:
        raise SystemExit("no charted scenario in the results")
    servers = _servers(scenarios)
    n = len(servers)
    width = 0.8 / n
    fig_w = max(10.0, 1.2 + len(scenarios) * (0.25 * n + 0.4))
    fig, ax = plt.subplots(figsize=(fig_w, 6.2), dpi=110)
    # A PyPy row shares its CPython twin's colour and is dotted.
    colours: dict[str, str] = {}
    handles: list[Patch] = []
    values = [r["rps"] for s in scenarios for r in s["results"] if r.get("rps")]
    low, high = min(values, default=1.0), max(values, default=10.0)
    for i, (label, ours) in enumerate(servers):
        base = label.removesuffix(PYPY_SUFFIX)
        if ours:
            colour, hatch, edge = OURS_COLOUR, None, "black"
        elif label == "nginx":
            colour, hatch, edge = "white", "///", NGINX_COLOUR
        else:
            if base not in colours:
                colours[base] = PEER_COLOURS[len(colours) % len(PEER_COLOURS)]
            colour, hatch, edge = colours[base], None, "none"
        if label != base:
            hatch, edge = "..", "#333333"
        xs, ys, missing = [], [], []
        for g, scen in enumerate(scenarios):
            x = g + (i - (n - 1) / 2) * width
            res = next((r for r in scen["results"] if r["label"] == label), None)
            if res and res["status"] == "ok" and res.get("rps"):
                xs.append(x)
                ys.append(res["rps"])
                label_text = None
                if res.get("ratio_ref") is not None:
                    label_text = f"×{res['ratio_ref']:.2f}"
                    # Against another server in this scenario (the TLS
                    # rows, where the run's reference has no TLS): named.
                    if scen.get("reference", data["reference"]) != data["reference"]:
                        label_text += f" {scen['reference']}"
                elif res.get("ratio_nginx") is not None:
                    # No reference number in this scenario (it failed): say
                    # where fastwsgi stands against the ceiling instead.
                    label_text = f"×{res['ratio_nginx']:.2f} nginx"
                if ours and label_text:
                    ax.annotate(label_text, (x, res["rps"]),
                                xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=8,
                                fontweight="bold", color=OURS_COLOUR, rotation=90)
            elif res is not None and res["status"] != "n/a":
                # n/a (a server without TLS in a TLS row) is an empty slot.
                missing.append(x)
        style = {"facecolor": colour, "hatch": hatch, "edgecolor": edge,
                 "linewidth": 0.8 if edge != "none" else 0}
        ax.bar(xs, ys, width * 0.92, zorder=3, **style)
        # Explicit legend entries: a server with no bar at all still gets one.
        handles.append(Patch(label=label, **style))
        if missing:
            ax.scatter(missing, [low / 3] * len(missing), marker="x", s=18,
                       color=OURS_COLOUR if ours else "#888888", zorder=4)
    ax.set_yscale("log")
    # Room below for the FAIL marks, above for the ratio labels.
    ax.set_ylim(bottom=low / 5, top=high * 4)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([s["name"] for s in scenarios])
    ax.set_ylabel("requests per second (log scale)")
    ax.grid(axis="y", which="major", color="#dddddd", zorder=0)
    m = data["machine"]
    ax.set_title(f"fastwsgi vs peers: requests/s per scenario, one worker each\n"
                 f"red labels: fastwsgi × {data['reference']} "
                 f"(median of per-round ratios, same run)",
                 fontsize=11, loc="left")
    fig.text(0.01, 0.01, f"{m['date']} · {m['cpu']}, {m['cores']} cores · "
             f"{data['mode']} run · x at the foot of a slot = FAIL / not installed",
             fontsize=8, color="#555555")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    # "tight" keeps the legend, which sits outside the axes, in the image.
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.chart results.json chart.png", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        draw(json.load(f), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
