# A container image's default: everything to stdout/stderr, sized by CPUs.
import multiprocessing
import os

bind = "127.0.0.1:" + os.environ.get("PORT", "8000")
cores = multiprocessing.cpu_count()
workers = int(os.environ.get("WEB_CONCURRENCY", cores * 2 + 1))
threads = int(os.environ.get("PYTHON_MAX_THREADS", 1))
worker_class = "gthread"
accesslog = "-"
errorlog = "-"
capture_output = True
loglevel = os.environ.get("LOG_LEVEL", "info")
timeout = 120
keepalive = 5
graceful_timeout = 30
forwarded_allow_ips = "*"
