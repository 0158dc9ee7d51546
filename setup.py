"""Package discovery only (metadata lives in pyproject.toml).

The built-in plugins live in ``plugins/`` but install as ``facebench_plugins`` so that they cannot
collide with another project's top-level ``plugins`` package; setuptools' declarative config cannot
express a directory-to-name mapping for every subpackage, so it is computed here.
"""

from setuptools import find_packages, setup

core = find_packages(include=["facebench", "facebench.*"])
builtin = ["facebench_plugins"] + [f"facebench_plugins.{p}" for p in find_packages("plugins")]

setup(packages=core + builtin, package_dir={"facebench_plugins": "plugins"})
