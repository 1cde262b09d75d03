"""Where the suite keeps things, all derived from this file's location so the
suite works from any checkout and any working directory."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# The project under test is the repository that contains bench/.
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SMOKE_RESULTS_DIR = BENCH_DIR / "results-smoke"
DEFAULT_VENV = BENCH_DIR / ".venv"
FASTWSGI_009_VENV = BENCH_DIR / ".venv-fastwsgi009"
PYPY_VENV = BENCH_DIR / ".venv-pypy"
BASELINE_VENV = BENCH_DIR / ".venv-baseline"  # --baseline REV: fastwsgi at REV
