"""Draw chart.png from results.json (run inside the bench venv, which has
matplotlib):  python -m bench.chart results.json chart.png

Grouped bars per scenario, one bar per server, log scale (the scenarios span
four orders of magnitude). fastwsgi is the one saturated colour and carries
its ratio against the reference; nginx, the ceiling, is hatched grey; a
server without a number gets an "x" at the foot of its slot.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OURS_COLOUR = "#d6361f"
NGINX_COLOUR = "#555555"
PEER_COLOURS = ["#8fb3d9", "#a6d49f", "#f2c879", "#c3a6d8", "#9fd6d2",
                "#e8a5c4", "#c9c27a", "#b0b0d8", "#d9b38c", "#a8c8a0", "#cccccc"]


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
    fig_w = max(8.0, 1.2 + len(scenarios) * (0.25 * n + 0.4))
    fig, ax = plt.subplots(figsize=(fig_w, 6.2), dpi=110)
    peer_i = 0
    low = min((r["rps"] for s in scenarios for r in s["results"] if r.get("rps")),
              default=1.0)
    for i, (label, ours) in enumerate(servers):
        if ours:
            colour, hatch, edge = OURS_COLOUR, None, "black"
        elif label == "nginx":
            colour, hatch, edge = "white", "///", NGINX_COLOUR
        else:
            colour, hatch, edge = PEER_COLOURS[peer_i % len(PEER_COLOURS)], None, "none"
            peer_i += 1
        xs, ys, missing = [], [], []
        for g, scen in enumerate(scenarios):
            x = g + (i - (n - 1) / 2) * width
            res = next((r for r in scen["results"] if r["label"] == label), None)
            if res and res["status"] == "ok" and res.get("rps"):
                xs.append(x)
                ys.append(res["rps"])
                if ours and res.get("ratio_ref") is not None:
                    ax.annotate(f"×{res['ratio_ref']:.2f}", (x, res["rps"]),
                                xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=8,
                                fontweight="bold", color=OURS_COLOUR, rotation=90)
            elif res is not None:
                missing.append(x)
        ax.bar(xs, ys, width * 0.92, label=label, color=colour, hatch=hatch,
               edgecolor=edge, linewidth=0.8 if edge != "none" else 0, zorder=3)
        if missing:
            ax.scatter(missing, [low / 3] * len(missing), marker="x", s=18,
                       color=OURS_COLOUR if ours else "#888888", zorder=4)
    ax.set_yscale("log")
    ax.set_ylim(bottom=low / 5)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([s["name"] for s in scenarios])
    ax.set_ylabel("requests per second (log scale)")
    ax.grid(axis="y", which="major", color="#dddddd", zorder=0)
    m = data["machine"]
    ax.set_title(f"fastwsgi vs peers: requests/s per scenario, one worker "
                 f"(labels: × {data['reference']}, median of per-round ratios)",
                 fontsize=11, loc="left")
    fig.text(0.01, 0.01, f"{m['date']} · {m['cpu']}, {m['cores']} cores · "
             f"{data['mode']} run · x at the foot of a slot = FAIL / not installed",
             fontsize=8, color="#555555")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out)
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
