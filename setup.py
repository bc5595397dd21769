"""Only the optional C extension; every other piece of metadata is in setup.cfg.

``tantra._fanout`` runs the hub's per-client broadcast loop in C (see
``tantra/fanout.py``). ``optional=True``: where it cannot be built (no
compiler, no Python headers) the install goes on and Tantra runs the same
loop in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("tantra._fanout", ["tantra/_fanout.c"], optional=True)])
