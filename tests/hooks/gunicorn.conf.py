# A gunicorn config file as teams write them: settings under gunicorn's
# names and server hooks.  tests/test_hooks.py runs it unchanged under
# gunicorn and under fastwsgi; every hook writes "pid name details" to
# the file named by HOOK_LOG.
import os

bind = "127.0.0.1:" + os.environ["HOOK_PORT"]
workers = 1
worker_class = "sync"
timeout = 30
graceful_timeout = 5
keepalive = 2
loglevel = "warning"
accesslog = None
raw_env = ["HOOK_FROM_CONF=yes"]
proc_name = "hooked"

LOG = os.environ["HOOK_LOG"]


def _note(*words):
    with open(LOG, "a") as f:
        f.write(" ".join(str(w) for w in (os.getpid(), *words)) + "\n")


def on_starting(server):
    _note("on_starting")


def when_ready(server):
    _note("when_ready")


def nworkers_changed(server, new_value, old_value):
    _note("nworkers_changed", new_value, old_value)


def pre_fork(server, worker):
    _note("pre_fork", worker.age)


def post_fork(server, worker):
    # What post_fork is for: reopen what must not be shared after --preload.
    _note("post_fork", worker.pid == os.getpid(), worker.ppid == server.pid)


def post_worker_init(worker):
    _note("post_worker_init", callable(worker.wsgi))


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
    _note("pre_request", req.method, req.path, req.query or "-")


def post_request(worker, req, environ, resp):
    _note("post_request", req.method, req.path, resp.status, environ["PATH_INFO"])


def worker_int(worker):
    _note("worker_int")


def worker_abort(worker):
    _note("worker_abort")


def worker_exit(server, worker):
    _note("worker_exit")


def child_exit(server, worker):
    _note("child_exit")


def on_reload(server):
    _note("on_reload")


def on_exit(server):
    _note("on_exit")
