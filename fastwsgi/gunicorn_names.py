"""Every gunicorn setting, and what it is here.

One entry per setting of gunicorn's (its config-file name and its
command-line spellings) says one of three things:

- ``setting``: fastwsgi's setting that does the same; gunicorn's options
  are aliases of its option, and its config-file name reads unchanged;
- ``covered``: fastwsgi already does what it is for; it is accepted and the
  log says why nothing changes;
- ``refused``: it cannot mean anything here; the command line and a config
  file refuse it with the reason, so that nobody believes it took effect.

The command line (cli.py), the config-file reader (sources.py) and the
migration page docs/from-gunicorn.md (scripts/settings-table) are all
derived from GUNICORN; the tests check it against gunicorn's own list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Name:
    name: str                      # gunicorn's config-file name
    options: tuple[str, ...] = ()  # gunicorn's command-line spellings
    setting: str | None = None     # fastwsgi's setting that does it
    covered: str = ""              # why nothing needs doing here
    refused: str = ""              # why it cannot mean anything here
    note: str = ""                 # how fastwsgi's setting differs
    flag: bool = False             # a covered option that takes no value

    @property
    def kind(self) -> str:
        return "setting" if self.setting else "covered" if self.covered else "refused"


HTTP2 = "fastwsgi speaks HTTP/1.1; put nginx or a load balancer in front for HTTP/2"
ASGI = "fastwsgi serves WSGI apps only"
SYSLOG = "the access log never goes to syslog (it is written in C, to --access-log); " \
         "the error log does with --log-syslog"
STATSD = "fastwsgi sends no gunicorn.backlog metric; --metrics-bind serves the " \
    "connections open and active"
STRICT = "fastwsgi's parser is strict and has no switch to accept what this lets through"
DIRTY = "fastwsgi has no dirty arbiters; run such work in a task queue"
LOGCONFIG = "configure the 'fastwsgi' logger in the app (fastwsgi leaves a configured " \
            "logger alone), or use --log-level, --log-format and --error-log"
CONTROL = "fastwsgi has no control socket; the master takes signals (README)"
PASTE = "a PasteDeploy file's [DEFAULT] section gives its global settings"

GUNICORN: tuple[Name, ...] = (
    Name("config", ("-c", "--config"), covered="fastwsgi reads -c FILE itself: a gunicorn "
         "Python config file, a fastwsgi.toml or a pyproject.toml"),
    Name("wsgi_app", setting="wsgi_app"),
    Name("bind", ("-b", "--bind"), setting="bind"),
    Name("backlog", ("--backlog",), setting="backlog"),
    Name("workers", ("-w", "--workers"), setting="workers"),
    Name("worker_class", ("-k", "--worker-class"), setting="threads",
         note="sync is fastwsgi's inline mode (the default), gthread its threaded mode "
              "(threads, 1 unless given, as gunicorn); any other class is refused"),
    Name("threads", ("--threads",), setting="threads",
         note="0 (the default) runs the app on the event loop's thread; N runs N app "
              "threads beside it"),
    Name("worker_connections", ("--worker-connections",),
         refused="fastwsgi has no per-worker connection limit (its loop holds "
                 "connections without threads; see --threads)"),
    Name("max_requests", ("--max-requests",), setting="max_requests"),
    Name("max_requests_jitter", ("--max-requests-jitter",), setting="max_requests_jitter"),
    Name("timeout", ("-t", "--timeout"), setting="timeout"),
    Name("graceful_timeout", ("--graceful-timeout",), setting="graceful_timeout"),
    Name("keepalive", ("--keep-alive",), setting="keepalive_timeout"),
    Name("limit_request_line", ("--limit-request-line",), setting="limit_request_line",
         note="0 (gunicorn's 'no limit') is refused: every limit is bounded"),
    Name("limit_request_fields", ("--limit-request-fields",), setting="limit_request_fields"),
    Name("limit_request_field_size", ("--limit-request-field_size",),
         setting="limit_request_field_size"),
    Name("reload", ("--reload",), setting="reload"),
    Name("reload_engine", ("--reload-engine",),
         covered="the reloader uses watchfiles when it is installed, else polling"),
    Name("reload_extra_files", ("--reload-extra-file",), setting="reload_extra_files"),
    Name("spew", ("--spew",), refused="fastwsgi has no line tracer; use a debugger"),
    Name("check_config", ("--check-config",), flag=True,
         covered="fastwsgi has the same option, --check-config"),
    Name("print_config", ("--print-config",), flag=True,
         covered="fastwsgi has the same option, --print-config"),
    Name("preload_app", ("--preload",), setting="preload"),
    Name("sendfile", ("--no-sendfile",), setting="sendfile",
         note="fastwsgi's --sendfile takes auto (the default: a copy to a peer on this "
              "host, sendfile otherwise), on or off; --no-sendfile means off"),
    Name("reuse_port", ("--reuse-port",), setting="reuse_port"),
    Name("chdir", ("--chdir",), setting="chdir"),
    Name("daemon", ("-D", "--daemon"), setting="daemon"),
    Name("raw_env", ("-e", "--env"), setting="env"),
    Name("pidfile", ("-p", "--pid"), setting="pid",
         note="-p with a number is fastwsgi's --port; with a path, gunicorn's --pid"),
    Name("worker_tmp_dir", ("--worker-tmp-dir",),
         covered="the workers' heartbeats live in shared memory, not in files"),
    Name("user", ("-u", "--user"), setting="user"),
    Name("group", ("-g", "--group"), setting="group"),
    Name("umask", ("-m", "--umask"), setting="umask",
         note="applies to the unix sockets fastwsgi creates"),
    Name("initgroups", ("--initgroups",), setting="initgroups"),
    Name("tmp_upload_dir", setting="spool_dir"),
    Name("secure_scheme_headers", setting="secure_scheme_headers"),
    Name("forwarded_allow_ips", ("--forwarded-allow-ips",), setting="forwarded_allow_ips"),
    Name("accesslog", ("--access-logfile",), setting="access_log"),
    Name("disable_redirect_access_to_syslog", ("--disable-redirect-access-to-syslog",),
         refused=SYSLOG),
    Name("access_log_format", ("--access-logformat",), setting="access_log_format"),
    Name("errorlog", ("--error-logfile", "--log-file"), setting="error_log"),
    Name("loglevel", ("--log-level",), setting="log_level"),
    Name("capture_output", ("--capture-output",), setting="capture_output"),
    Name("logger_class", ("--logger-class",), refused=LOGCONFIG),
    Name("logconfig", ("--log-config",), setting="logconfig"),
    Name("logconfig_dict", setting="logconfig_dict"),
    Name("logconfig_json", ("--log-config-json",), setting="logconfig_json"),
    Name("syslog_addr", ("--log-syslog-to",), setting="syslog_addr"),
    Name("syslog", ("--log-syslog",), setting="syslog"),
    Name("syslog_prefix", ("--log-syslog-prefix",), setting="syslog_prefix"),
    Name("syslog_facility", ("--log-syslog-facility",), setting="syslog_facility"),
    Name("enable_stdio_inheritance", ("-R", "--enable-stdio-inheritance"), flag=True,
         covered="the workers always share the master's stdout and stderr"),
    Name("statsd_host", ("--statsd-host",), setting="statsd_host",
         note="sent once a second by the master, summed over the workers"),
    Name("dogstatsd_tags", ("--dogstatsd-tags",), setting="dogstatsd_tags"),
    Name("statsd_prefix", ("--statsd-prefix",), setting="statsd_prefix"),
    Name("enable_backlog_metric", ("--enable-backlog-metric",), refused=STATSD),
    Name("proc_name", ("-n", "--name"), setting="name"),
    Name("default_proc_name", covered="the process titles name the app's spec "
                                      "unless --name is given"),
    Name("pythonpath", ("--pythonpath",), setting="pythonpath"),
    Name("paste", ("--paste", "--paster"), setting="paste"),
    Name("raw_paste_global_conf", ("--paste-global",), refused=PASTE),
    Name("on_starting", setting="on_starting"),
    Name("on_reload", setting="on_reload"),
    Name("when_ready", setting="when_ready"),
    Name("pre_fork", setting="pre_fork"),
    Name("post_fork", setting="post_fork"),
    Name("post_worker_init", setting="post_worker_init"),
    Name("worker_int", setting="worker_int"),
    Name("worker_abort", setting="worker_abort"),
    Name("pre_exec", refused="fastwsgi does not re-execute itself on SIGUSR2; "
                             "SIGHUP replaces the workers with new code"),
    Name("pre_request", setting="pre_request"),
    Name("post_request", setting="post_request"),
    Name("child_exit", setting="child_exit"),
    Name("worker_exit", setting="worker_exit"),
    Name("nworkers_changed", setting="nworkers_changed"),
    Name("on_exit", setting="on_exit"),
    Name("ssl_context", refused="a Python SSLContext cannot drive the C core's OpenSSL "
         "sessions; give certfile, keyfile, ca_certs, cert_reqs and ciphers"),
    Name("proxy_protocol", ("--proxy-protocol",), setting="proxy_protocol",
         note="a switch: v1 and v2 are both read when it is on"),
    Name("proxy_allow_ips", ("--proxy-allow-from",), setting="proxy_allow_ips"),
    Name("protocol", ("--protocol",), refused="fastwsgi speaks HTTP only, not uwsgi"),
    Name("uwsgi_allow_ips", ("--uwsgi-allow-from",),
         refused="fastwsgi speaks HTTP only, not uwsgi"),
    Name("keyfile", ("--keyfile",), setting="keyfile"),
    Name("certfile", ("--certfile",), setting="certfile"),
    Name("ssl_version", ("--ssl-version",),
         covered="TLS 1.2 and 1.3 are negotiated (1.0 and 1.1 never); "
                 "--tls-min-version 1.3 raises the floor"),
    Name("cert_reqs", ("--cert-reqs",), setting="cert_reqs"),
    Name("ca_certs", ("--ca-certs",), setting="ca_certs"),
    Name("suppress_ragged_eofs", ("--suppress-ragged-eofs",), setting="suppress_ragged_eofs"),
    Name("do_handshake_on_connect", ("--do-handshake-on-connect",),
         setting="do_handshake_on_connect",
         note="the handshake always starts at accept, without blocking the loop"),
    Name("ciphers", ("--ciphers",), setting="ciphers"),
    Name("http_protocols", ("--http-protocols",), refused=HTTP2),
    Name("http2_cleartext", ("--http2-cleartext",), refused=HTTP2),
    Name("http2_max_concurrent_streams", ("--http2-max-concurrent-streams",), refused=HTTP2),
    Name("http2_initial_window_size", ("--http2-initial-window-size",), refused=HTTP2),
    Name("http2_max_frame_size", ("--http2-max-frame-size",), refused=HTTP2),
    Name("http2_max_header_list_size", ("--http2-max-header-list-size",), refused=HTTP2),
    Name("permit_obsolete_folding", ("--permit-obsolete-folding",), refused=STRICT),
    Name("strip_header_spaces", ("--strip-header-spaces",), refused=STRICT),
    Name("permit_unconventional_http_method", ("--permit-unconventional-http-method",),
         refused=STRICT),
    Name("permit_unconventional_http_version", ("--permit-unconventional-http-version",),
         refused=STRICT),
    Name("casefold_http_method", ("--casefold-http-method",), refused=STRICT),
    Name("forwarder_headers", ("--forwarder-headers",),
         refused="fastwsgi never takes SCRIPT_NAME or PATH_INFO from request fields"),
    Name("header_map", ("--header-map",), setting="allow_underscore_headers",
         note="gunicorn's drop is the default; dangerous is --allow-underscore-headers; "
              "refuse is not offered"),
    Name("asgi_loop", ("--asgi-loop",), refused=ASGI),
    Name("asgi_lifespan", ("--asgi-lifespan",), refused=ASGI),
    Name("asgi_disconnect_grace_period", ("--asgi-disconnect-grace-period",), refused=ASGI),
    Name("websocket_max_message_size", ("--websocket-max-message-size",), refused=ASGI),
    Name("http_parser", ("--http-parser",),
         covered="fastwsgi always parses with its own strict C parser"),
    Name("root_path", ("--root-path",),
         refused="an ASGI setting; a WSGI app mounted under a prefix gets it in SCRIPT_NAME "
                 "from the proxy (see README)"),
    Name("dirty_apps", ("--dirty-app",), refused=DIRTY),
    Name("dirty_workers", ("--dirty-workers",), refused=DIRTY),
    Name("dirty_timeout", ("--dirty-timeout",), refused=DIRTY),
    Name("dirty_threads", ("--dirty-threads",), refused=DIRTY),
    Name("dirty_graceful_timeout", ("--dirty-graceful-timeout",), refused=DIRTY),
    Name("on_dirty_starting", refused=DIRTY),
    Name("dirty_post_fork", refused=DIRTY),
    Name("dirty_worker_init", refused=DIRTY),
    Name("dirty_worker_exit", refused=DIRTY),
    Name("control_socket", ("--control-socket",), refused=CONTROL),
    Name("control_socket_mode", ("--control-socket-mode",), refused=CONTROL),
    Name("control_socket_disable", ("--no-control-socket",), flag=True,
         covered="fastwsgi opens no control socket"),
)

BY_NAME: Mapping[str, Name] = {n.name: n for n in GUNICORN}
BY_OPTION: Mapping[str, Name] = {o: n for n in GUNICORN for o in n.options}

# -k/--worker-class: gunicorn's sync and gthread are fastwsgi's inline and
# threaded modes; any other class has no equivalent.
WORKER_CLASSES = ("sync", "gthread")


def translate(name: str, value: object) -> tuple[str, object] | None:
    """A config file's gunicorn value as fastwsgi's (name, value); None:
    nothing to set.  ValueError (the message) for what is refused."""
    entry = BY_NAME.get(name)
    if entry is None:
        return name, value
    if entry.refused:
        raise ValueError(f"{name}: not supported: {entry.refused}")
    if entry.covered:
        return None
    if name == "worker_class":
        if value in WORKER_CLASSES:
            return None
        raise ValueError(f"worker_class: {value!r} has no equivalent here (sync: the "
                         "default inline mode; gthread: set threads)")
    if name == "proxy_protocol" and isinstance(value, str) and value in ("v1", "v2", "auto"):
        return "proxy_protocol", True
    if name == "header_map":
        if value in ("drop", "dangerous"):
            return "allow_underscore_headers", value == "dangerous"
        raise ValueError(f"header_map: {value!r}: fastwsgi drops header names with an "
                         "underscore (drop), or keeps them (dangerous)")
    assert entry.setting is not None
    return entry.setting, value


def _cell(entry: Name) -> str:
    if entry.setting:
        from .hooks import BY_NAME as HOOKS

        if entry.setting in HOOKS:
            return f"server hook `{entry.setting}`"
        if entry.setting == "wsgi_app":
            return "`wsgi_app` (config file), else APP on the command line"
        return f"`--{entry.setting.replace('_', '-')}`" + (
            "" if entry.setting == entry.name else f" (`{entry.setting}`)")
    if entry.covered:
        return "accepted, nothing to do: " + entry.covered
    return "refused: " + entry.refused


def migration_page() -> str:
    """docs/from-gunicorn.md, from GUNICORN and the hooks' declarations."""
    from .hooks import HOOKS

    lines = [
        "# Moving from gunicorn",
        "",
        "<!-- Generated by scripts/settings-table --write from fastwsgi/gunicorn_names.py"
        " and fastwsgi/hooks.py; edit those. -->",
        "",
        "Replace the word `gunicorn` with `fastwsgi` in the command line, the Dockerfile"
        " or the systemd unit; keep `gunicorn.conf.py` as it is (`-c gunicorn.conf.py`).",
        "Every gunicorn setting is below, under its config-file name and its options:"
        " what fastwsgi does with it.  A setting that fastwsgi cannot honour is refused"
        " at start-up with the reason (exit status 2), never ignored.",
        "",
        "What differs, and why:",
        "",
        "- `-p 8000` (a number) is fastwsgi's `--port`; `-p FILE` is gunicorn's `--pid`.",
        "- `--threads`: gunicorn's 1 is its sync worker; fastwsgi's inline mode (the"
        " default) is 0, and N runs N app threads beside the event loop.",
        "- In a Python config file, a lower-case name that is no setting is an error"
        " naming the file and line (gunicorn ignores it): a typo must not pass"
        " silently.  UPPER_CASE names and names starting with `_` are the file's own;"
        " a value of `None` means the default, as in gunicorn.",
        "- SIGTTOU retires the newest worker (gunicorn: the oldest), so that SIGTTIN"
        " then SIGTTOU leaves the workers that were serving.",
        "- SIGUSR2 does not re-execute the master; SIGHUP replaces the workers with new"
        " code (and, unlike gunicorn, retires an old worker only once a new one"
        " serves).",
        "- A hook, like `--user`, runs the master even with one worker: the hooks'"
        " moments (pre_fork, post_fork, child_exit, ...) are the master's.",
        "- `--user`: the workers switch before importing the app, as gunicorn's do;"
        " with `--preload` the master switches first, so that no app code runs as"
        " root (gunicorn imports it as root).",
        "",
        "| gunicorn setting | its options | fastwsgi | notes |",
        "| --- | --- | --- | --- |",
    ]
    for entry in GUNICORN:
        options = ", ".join(f"`{o}`" for o in entry.options) or "config file only"
        lines.append(f"| `{entry.name}` | {options} | {_cell(entry)} | {entry.note} |")
    lines += [
        "",
        "## Server hooks",
        "",
        "Defined in the Python config file under these names; called at the same"
        " moments as gunicorn calls them, with arguments of the same shapes:"
        " `server` (`cfg`, `pid`, `num_workers`, `WORKERS`, `LISTENERS`, `log`,"
        " `app`), `worker` (`age`, `pid`, `ppid`, `cfg`, `log`, `alive`, `booted`,"
        " `nr`, `wsgi`), `req` (`method`, `uri`, `path`, `query`, `version`,"
        " `headers`, `scheme`), `resp` (`status`, `status_code`, `headers`, `sent`)."
        "  `pre_request` and `post_request` cost nothing when they are not set: only"
        " then is the app wrapped.  A hook that raises is logged with its"
        " traceback; in `post_fork` or `post_worker_init` it stops the worker from"
        " serving, and at start-up the master then exits with status 1.",
        "",
        "| hook | arguments | called |",
        "| --- | --- | --- |",
    ]
    for hook in HOOKS:
        lines.append(f"| `{hook.name}` | {', '.join(hook.params)} | {hook.when} |")
    return "\n".join(lines) + "\n"
