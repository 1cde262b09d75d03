"""--user and --group: who the app runs as when fastwsgi starts as root.

The master binds (privileged ports included) as root and keeps root, to
remove its pid file and unix sockets at exit; each worker switches before
it imports the app, so no app code ever runs as root.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import secrets
import stat
from dataclasses import dataclass

from .config import Config, ConfigError


def find_user(text: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except (KeyError, OverflowError):
        return None


def find_group(text: str) -> grp.struct_group | None:
    try:
        return grp.getgrgid(int(text)) if text.isdigit() else grp.getgrnam(text)
    except (KeyError, OverflowError):
        return None


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    name: str
    groups: tuple[int, ...]


def wanted(cfg: Config) -> Identity | None:
    """Who the app should run as; None: as the process already is."""
    if not cfg.user and not cfg.group:
        return None
    user = find_user(cfg.user) if cfg.user else pwd.getpwuid(os.getuid())
    if user is None:
        raise ConfigError(f"user: {cfg.user!r}: no such user on this machine")
    gid = user.pw_gid
    if cfg.group:
        group = find_group(cfg.group)
        if group is None:
            raise ConfigError(f"group: {cfg.group!r}: no such group on this machine")
        gid = group.gr_gid
    groups: tuple[int, ...] = (gid,)
    if cfg.initgroups:
        groups = tuple(os.getgrouplist(user.pw_name, gid))
    return Identity(user.pw_uid, gid, user.pw_name, groups)


def check(cfg: Config) -> Identity | None:
    """At start, before anything is bound: a switch needs root, and
    --forbid-root refuses an app that would run as root."""
    who = wanted(cfg)
    if who is not None and os.geteuid() != 0 and (who.uid != os.geteuid()
                                                  or who.gid != os.getegid()):
        raise ConfigError("user: switching to another user needs fastwsgi to be "
                          "started as root")
    runs_as = who.uid if who is not None else os.geteuid()
    if cfg.forbid_root and runs_as == 0:
        raise ConfigError("forbid_root: the app would run as root; give --user")
    return who


def switch(who: Identity | None) -> None:
    """Become `who` for good (groups first: after setuid they could not be
    changed any more)."""
    if who is None or (os.geteuid() == who.uid and os.getegid() == who.gid):
        return
    os.setgroups(list(who.groups))
    os.setgid(who.gid)
    os.setuid(who.uid)
    os.environ["HOME"] = pwd.getpwuid(who.uid).pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = who.name


def give(path: str, who: Identity | None) -> None:
    """A unix socket fastwsgi bound for the workers is theirs after the
    switch.  The link itself, never what a link planted there points to."""
    if who is not None and path:
        try:
            os.chown(path, who.uid, who.gid, follow_symlinks=False)
        except OSError:
            pass


def create_log(path: str, who: Identity | None, setting: str = "access_log") -> None:
    """Create a log file (the access log, the error log) as the workers
    will open it after switching to `who`, and make it theirs.  As root,
    and in a directory the app's user may write to: a symbolic link
    planted at `path` is refused, not followed (chowning its target would
    hand the user /etc/shadow), and the file is changed through its
    descriptor, so nothing can be swapped in between.  OSError, whose
    strerror names the setting, when it cannot."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        if who is None:
            os.close(os.open(path, flags | os.O_CREAT, 0o640))
            return
        try:
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            fd = _create_as(path, who, flags)
    except OSError as exc:
        why = (f"{path} is a symbolic link; with --user give the file's own path"
               if who is not None and exc.errno == errno.ELOOP
               else f"cannot open {path}: {exc.strerror}")
        raise OSError(exc.errno, f"{setting}: {why}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{setting}: {path} is not a regular file")
        os.fchown(fd, who.uid, who.gid)
    finally:
        os.close(fd)


def _create_as(path: str, who: Identity, flags: int) -> int:
    """A new file at `path` that is `who`'s from the moment it has that
    name (a worker reopening it then never finds it root's): made under a
    name of its own, given away, then linked in place; link() never
    replaces what another process put there first, which is then opened."""
    folder, name = os.path.split(path)
    for _ in range(16):
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}")
        try:
            fd = os.open(temp, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        except FileExistsError:
            continue
        try:
            os.fchown(fd, who.uid, who.gid)
            os.link(temp, path)
        except FileExistsError:
            os.close(fd)
            fd = -1
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.unlink(temp)
        if fd < 0:
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)
        return fd
    raise OSError(errno.EEXIST, f"no free temporary name beside {path}")
