"""Build glue: setuptools compiles the C core through cffi's builder."""

import sys
import sysconfig

from setuptools import setup


def _wheel_options() -> dict:
    """Tag CPython wheels cp39-abi3: one wheel for CPython 3.9 and later.

    cffi already compiles the core against the limited API on CPython (the
    module is ``_fastwsgi.abi3.so``); this only names the wheel to match.
    cffi leaves the limited API off on free-threaded and debug builds, and
    PyPy has no stable ABI, so those get wheels for the one interpreter.
    """
    if (sys.implementation.name == "cpython"
            and not sysconfig.get_config_var("Py_GIL_DISABLED")
            and not hasattr(sys, "gettotalrefcount")):
        return {"bdist_wheel": {"py_limited_api": "cp39"}}
    return {}


setup(cffi_modules=["fastwsgi/_build.py:ffi"], options=_wheel_options())
