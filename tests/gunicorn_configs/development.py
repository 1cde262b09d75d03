# A development setup: reload on code and template changes.
import glob
import os

here = os.path.dirname(os.path.abspath(__file__))
reload = True
reload_extra_files = [os.path.join(here, "templates", "**", "*.html")]
workers = 1
loglevel = "debug"
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
_unused = glob.glob("*.py")
