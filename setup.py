"""Builds the optional C accelerator of the wire parsers; everything else is in pyproject.toml.

``optional=True``: where no C compiler (or no Python headers) exists, the
build of ``callguard.adapters._cwire`` fails quietly and callguard runs on
its pure-Python parsers, which give the same results (the property tests
hold both to the reference readers).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("callguard.adapters._cwire", ["src/callguard/adapters/_cwire.c"], optional=True)])
