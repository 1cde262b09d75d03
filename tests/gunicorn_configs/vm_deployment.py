# A VM: log files, a pid file, the app loaded before forking.
import os
import tempfile

base = os.environ.get("APP_BASE", tempfile.gettempdir())
pidfile = os.path.join(base, "fw-corpus-app.pid")
accesslog = os.path.join(base, "fw-corpus-access.log")
errorlog = os.path.join(base, "fw-corpus-error.log")
enable_stdio_inheritance = True
preload_app = True
workers = 2
max_requests = 1000
max_requests_jitter = 50
proc_name = "corpus-app"
umask = 0o007
daemon = False
