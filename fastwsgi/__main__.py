"""``python -m fastwsgi module:app``."""

from .cli import main

main()
