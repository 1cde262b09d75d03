"""Benchmark suite comparing fastwsgi with other WSGI servers (see README.md)."""
