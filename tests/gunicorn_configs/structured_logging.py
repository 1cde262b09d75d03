# JSON-ish structured logging through logging.config.
import os

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
workers = 2
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"format": '{"time": "%(asctime)s", "level": "%(levelname)s", '
                           '"logger": "%(name)s", "message": "%(message)s"}'},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json",
                    "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}


def on_starting(server):
    server.log.info("starting with %s", logconfig_dict["version"])
