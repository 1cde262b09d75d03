"""A committed revision of this repository, for `--baseline REV`.

The revision is resolved with `git rev-parse` and its files are exported with
`git archive | tar -x` into a directory of the caller's choosing. Nothing here
changes the work tree, the index or any ref: git is only asked to read.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import paths

GIT_TIMEOUT = 120  # seconds per git call; archive of the whole tree included
LABEL_PREFIX = "fastwsgi@"


class RevisionError(Exception):
    """git could not resolve or export a revision; the message says why."""


@dataclass(frozen=True)
class Revision:
    given: str  # as typed, e.g. "HEAD~1"
    commit: str  # full hash
    short: str  # git's abbreviated hash, unique in this repository
    subject: str  # first line of the commit message

    @property
    def label(self) -> str:
        return f"{LABEL_PREFIX}{self.short}"

    def describe(self) -> str:
        return f"{self.given} = {self.commit} ({self.subject})"


def _git(*args: str) -> str:
    cmd = ["git", "--no-optional-locks", "-C", str(paths.REPO_ROOT), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=GIT_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise RevisionError(f"`git {' '.join(args)}` timed out after {GIT_TIMEOUT} s") from exc
    except OSError as exc:
        raise RevisionError(f"cannot run git: {exc}") from exc
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RevisionError(f"`git {' '.join(args)}`: {why}")
    return proc.stdout.strip()


def resolve(given: str) -> Revision:
    """The commit `given` names (a hash, HEAD~3, a branch or tag)."""
    if not given or given.startswith("-"):
        raise RevisionError(f"not a revision: {given!r}")
    commit = _git("rev-parse", "--verify", "--end-of-options", f"{given}^{{commit}}")
    short = _git("rev-parse", "--short", commit)
    subject = _git("log", "-1", "--format=%s", commit)
    return Revision(given, commit, short, subject)


def work_tree() -> str:
    """What the `fastwsgi` row runs: the work tree, at which commit, whether edited."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        edited = _git("status", "--porcelain", "--untracked-files=no")
    except RevisionError as exc:
        return f"working tree ({exc})"
    return f"working tree at {head}" + (" with uncommitted changes" if edited else "")


def export(commit: str, dest: Path) -> None:
    """Write the files of `commit` into the existing directory `dest`."""
    archive_cmd = ["git", "-C", str(paths.REPO_ROOT), "archive", "--format=tar", commit]
    try:
        archive = subprocess.Popen(archive_cmd, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    except OSError as exc:
        raise RevisionError(f"cannot run git: {exc}") from exc
    try:
        assert archive.stdout is not None
        try:
            tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout,
                                 capture_output=True, text=True, timeout=GIT_TIMEOUT,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RevisionError(f"tar -x failed: {exc}") from exc
        finally:
            archive.stdout.close()
        try:
            _, err = archive.communicate(timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise RevisionError(f"git archive timed out after {GIT_TIMEOUT} s") from exc
    finally:
        if archive.poll() is None:
            archive.kill()
            archive.wait()
    if archive.returncode != 0:
        why = err.decode(errors="replace").strip().splitlines()
        raise RevisionError(f"git archive {commit}: {why[-1] if why else 'failed'}")
    if tar.returncode != 0:
        why = tar.stderr.strip().splitlines()
        raise RevisionError(f"tar -x: {why[-1] if why else 'failed'}")
