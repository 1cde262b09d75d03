"""Build glue: setuptools compiles the C core through cffi's builder."""

from setuptools import setup

setup(cffi_modules=["fastwsgi/_build.py:ffi"])
