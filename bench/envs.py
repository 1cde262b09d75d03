"""Virtualenvs and the packages installed into them.

Four environments, because several packages share the import name `fastwsgi`:
  main         bench/.venv            this repository's fastwsgi and the peers
  fastwsgi009  bench/.venv-fastwsgi009  the unrelated PyPI fastwsgi==0.0.9 only
  pypy         bench/.venv-pypy       PyPy 3.9 builds of what runs on PyPy (--pypy)
  baseline     bench/.venv-baseline   this repository's fastwsgi at a git revision
                                      (--baseline REV)
An install that fails is recorded with its reason and reported, never hidden.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench import paths, revision, system

PIP_TIMEOUT = 900  # seconds per pip call: a source build of a peer, bounded
VENV_TIMEOUT = 300
STAMP = "bench-installed.json"
# Stamp key holding the full hash of the revision a baseline venv was built from.
REVISION_KEY = "revision"


@dataclass(frozen=True)
class Requirement:
    """One installable thing, by the name the results show."""

    name: str
    pip_args: tuple[str, ...]
    check: str  # Python statement that proves the install is usable
    # Tried in order when the plain install fails (each is a list of pip calls).
    fallbacks: tuple[tuple[tuple[str, ...], ...], ...] = ()
    fallback_note: str = ""
    # Ours changes between runs, so it is reinstalled every time.
    always_reinstall: bool = False
    debs: tuple[str, ...] = ()
    # Full commit hash: build this repository as it was at that commit (the
    # files come from `git archive`; pip_args is then unused).
    revision: str | None = None


REQUIREMENTS: dict[str, Requirement] = {
    req.name: req
    for req in (
        Requirement("fastwsgi", (str(paths.REPO_ROOT),),
                    "import fastwsgi", always_reinstall=True),
        # 0.0.9 imports pkg_resources at start-up; venvs on Python >= 3.12 no
        # longer come with setuptools, and recent setuptools dropped it.
        Requirement("fastwsgi==0.0.9", ("fastwsgi==0.0.9", "setuptools<70"),
                    "import fastwsgi, _fastwsgi"),
        Requirement("bjoern", ("bjoern",), "import bjoern", debs=("libev-dev",)),
        Requirement("granian", ("granian",), "import granian"),
        Requirement("gunicorn", ("gunicorn",), "import gunicorn"),
        Requirement("waitress", ("waitress",), "import waitress"),
        # meinheld pins greenlet<0.5, which no longer builds on Python 3.11;
        # meinheld itself works with a current greenlet.
        Requirement("meinheld", ("meinheld",), "import meinheld.server",
                    fallbacks=((("greenlet",), ("--no-deps", "meinheld")),),
                    fallback_note="installed with --no-deps and a current greenlet"),
        Requirement("socketify", ("socketify",), "import socketify"),
        Requirement("flask", ("flask",), "import flask"),
        Requirement("matplotlib", ("matplotlib",), "import matplotlib"),
    )
}


def add_revision(label: str, commit: str) -> Requirement:
    """Register this repository at `commit` as the requirement named `label`."""
    req = Requirement(label, (), "import fastwsgi", revision=commit)
    REQUIREMENTS[label] = req
    return req


@dataclass
class Venv:
    key: str
    path: Path
    base_python: str
    error: str | None = None  # why the venv itself could not be made
    status: dict[str, str] = field(default_factory=dict)  # requirement -> "ok" | reason

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def ok(self, requirement: str) -> bool:
        return self.error is None and self.status.get(requirement, "").startswith("ok")

    def why_not(self, requirement: str) -> str:
        if self.error is not None:
            return self.error
        return self.status.get(requirement, "not requested")


def _last_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("ERROR:") or "error:" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _run(cmd: list[str], timeout: int) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=paths.BENCH_DIR)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s: {' '.join(cmd[-2:])}"
    except OSError as exc:
        return False, str(exc)
    return proc.returncode == 0, proc.stdout + proc.stderr


class EnvManager:
    def __init__(self, log: Callable[[str], None], reinstall: bool,
                 skip_install: bool) -> None:
        self.log = log
        self.reinstall = reinstall
        self.skip_install = skip_install
        self.debs: dict[str, str] = {}

    def _create(self, venv: Venv) -> None:
        if venv.python.exists():
            return
        if self.skip_install:
            venv.error = f"no virtualenv at {venv.path} (--skip-install)"
            return
        if "pypy" in Path(venv.base_python).name:
            # Debian ships PyPy's ensurepip in a separate package.
            got = system.ensure_debs(["pypy3", "pypy3-venv"], self.log)
            for deb, status in got.items():
                if status != "ok":
                    self.log(f"{deb}: {status}")
        self.log(f"creating {venv.path} with {venv.base_python}")
        ok, out = _run([venv.base_python, "-m", "venv", str(venv.path)], VENV_TIMEOUT)
        if not ok:
            venv.error = f"venv creation failed: {_last_error(out)}"

    def _stamp(self, venv: Venv) -> dict[str, str]:
        try:
            data = json.loads((venv.path / STAMP).read_text())
            return {str(k): str(v) for k, v in data.items()}
        except (OSError, ValueError):
            return {}

    def _pip(self, venv: Venv, args: tuple[str, ...], verb: str = "install"
             ) -> tuple[bool, str]:
        cmd = [str(venv.python), "-m", "pip", verb, "-q",
               "--disable-pip-version-check", *args]
        self.log(f"  pip {verb} {' '.join(args)}")
        return _run(cmd, PIP_TIMEOUT)

    def _install_revision(self, venv: Venv, commit: str) -> tuple[bool, str]:
        """pip install this repository as it was at `commit`, from a private
        export that is removed afterwards."""
        with tempfile.TemporaryDirectory(prefix="fastwsgi-baseline-") as tmp:
            try:
                revision.export(commit, Path(tmp))
            except revision.RevisionError as exc:
                return False, f"ERROR: {exc}"
            self.log(f"  exported {commit[:12]} to {tmp} (git archive)")
            # The version number may be the same as the one installed before:
            # remove that first, so the new build is certainly what runs.
            self._pip(venv, ("-y", "fastwsgi"), verb="uninstall")
            return self._pip(venv, (tmp,))

    def _install(self, venv: Venv, req: Requirement) -> str:
        for deb in req.debs:
            if deb not in self.debs:
                self.debs.update(system.ensure_debs([deb], self.log))
        if req.revision is not None:
            ok, out = self._install_revision(venv, req.revision)
        else:
            ok, out = self._pip(venv, req.pip_args)
        note = ""
        if not ok:
            first_error = _last_error(out)
            for steps in req.fallbacks:
                ok = all(self._pip(venv, step)[0] for step in steps)
                if ok:
                    note = f" ({req.fallback_note})"
                    break
            if not ok:
                return f"not installed: {first_error}"
        good, out = _run([str(venv.python), "-c", req.check], 120)
        if not good:
            return f"not installed: installed but `{req.check}` fails: {_last_error(out)}"
        return "ok" + note

    def prepare(self, venv: Venv, wanted: list[str]) -> None:
        """Create venv if needed and make every wanted requirement usable."""
        self._create(venv)
        if venv.error is not None:
            return
        stamp = self._stamp(venv)
        for name in wanted:
            req = REQUIREMENTS[name]
            previous = stamp.get(name)
            if req.revision is not None and stamp.get(REVISION_KEY) != req.revision:
                # Built from another revision (or never): not this one's result.
                previous = None
                if self.skip_install:
                    held = stamp.get(REVISION_KEY, "nothing")
                    venv.status[name] = (f"not installed: {venv.path.name} holds "
                                         f"{held[:12]}, not {req.revision[:12]} "
                                         "(--skip-install)")
                    continue
            if self.skip_install:
                good, _ = _run([str(venv.python), "-c", req.check], 120)
                venv.status[name] = "ok (not reinstalled)" if good else \
                    (previous or "not installed (--skip-install)")
                continue
            if previous is not None and not self.reinstall and not req.always_reinstall:
                # Known result from an earlier run: a failed source build is not
                # retried every run (--reinstall does that).
                venv.status[name] = previous
                continue
            venv.status[name] = self._install(venv, req)
            if req.revision is not None:
                # One revision per venv: forget what the previous one left.
                for key in [k for k in stamp if k.startswith(revision.LABEL_PREFIX)]:
                    del stamp[key]
                stamp[REVISION_KEY] = req.revision
            stamp[name] = venv.status[name]
            try:
                (venv.path / STAMP).write_text(json.dumps(stamp, indent=1))
            except OSError:
                pass


def make_venvs(main_path: Path, base_python: str | None) -> dict[str, Venv]:
    return {
        "main": Venv("main", main_path, base_python or sys.executable),
        "fastwsgi009": Venv("fastwsgi009", paths.FASTWSGI_009_VENV,
                            base_python or sys.executable),
        "pypy": Venv("pypy", paths.PYPY_VENV, "/usr/bin/pypy3"),
        "baseline": Venv("baseline", paths.BASELINE_VENV, base_python or sys.executable),
    }
