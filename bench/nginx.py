"""nginx as the ceiling reference: one worker, the same body, from a config
written into the run directory (nothing of the system nginx is used). In
the TLS scenarios its listener speaks HTTPS with the run's certificate."""

from __future__ import annotations

import os
from pathlib import Path

from bench.scenarios import BIG_FILE_NAME, FILE_NAME, Scenario
from bench.tls import Certificate

CONF_TEMPLATE = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile {nofile};
{user}
events {{
    worker_connections {conns};
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # The defaults (close after 1000 requests) would make nginx reconnect
    # during a run, which no peer is asked to do.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 1m;
    client_body_buffer_size 128k;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port}{ssl} backlog=4096;
{tls}        location / {{
            {location}
        }}
    }}
}}
"""

# nginx's defaults otherwise (session tickets on, no shared session cache).
# The protocols are named because nginx before 1.23.4 leaves TLS 1.3 out
# of its default list, and every other server here negotiates 1.3.
TLS_TEMPLATE = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
"""


def write_conf(prefix: Path, port: int, scenario: Scenario, files_dir: Path,
               nofile: int, cert: Certificate | None = None) -> Path:
    assert scenario.nginx is not None
    prefix.mkdir(parents=True, exist_ok=True)
    # Plain replacement, not str.format: locations may contain JSON braces.
    location = (scenario.nginx.replace("{dir}", str(files_dir))
                .replace("{file}", FILE_NAME).replace("{big}", BIG_FILE_NAME))
    conf = CONF_TEMPLATE.format(
        prefix=prefix, port=port, location=location,
        ssl="" if cert is None else " ssl",
        tls="" if cert is None else TLS_TEMPLATE.format(cert=cert.cert, key=cert.key),
        nofile=nofile, conns=max(1024, min(nofile - 100, 20000)),
        # As root, nginx would drop its worker to `nobody`, which cannot read
        # the private run directory.
        user="user root;" if os.geteuid() == 0 else "",
    )
    path = prefix / f"nginx-{port}.conf"
    path.write_text(conf)
    return path


def command(conf: Path, prefix: Path) -> list[str]:
    # -e: errors to stderr before the config is read (the default log path may
    # not be writable).
    return ["nginx", "-e", "stderr", "-p", str(prefix), "-c", str(conf)]
