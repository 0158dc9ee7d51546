"""facebench's built-in plugins, installed as the ``facebench_plugins`` package.

Each subpackage is one plugin, registered through the ``facebench`` entry-point group in
``pyproject.toml`` exactly as a third-party plugin would be; nothing in ``facebench/`` imports them.
"""
