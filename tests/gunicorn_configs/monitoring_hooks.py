# Hooks that report on workers, and helper functions that are no hook.
import time

started = {}


def _now():
    return time.monotonic()


def describe(worker):
    return f"worker {worker.pid}"


def post_fork(server, worker):
    started[worker.pid] = _now()
    server.log.info("%s forked", describe(worker))


def worker_exit(server, worker):
    server.log.info("%s exits", describe(worker))


def child_exit(server, worker):
    started.pop(worker.pid, None)


workers = 2
timeout = 30
