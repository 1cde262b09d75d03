# A host with a StatsD (Datadog) agent beside the app.
import os
import socket

bind = "127.0.0.1:8000"
workers = 2
statsd_host = os.environ.get("STATSD_HOST", "localhost:8125")
statsd_prefix = os.environ.get("STATSD_PREFIX", "shop.web")
dogstatsd_tags = "service:shop,host:" + socket.gethostname().split(".")[0]
loglevel = "warning"
proxy_protocol = True
proxy_allow_ips = "127.0.0.1,10.0.0.0/8"
