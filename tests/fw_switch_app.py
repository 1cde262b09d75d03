"""An app that sets the interpreter's switch interval itself, at import:
the server must keep it."""

import sys

from apps import router as app

sys.setswitchinterval(0.001)

__all__ = ["app"]
