"""toyfaces: facebench's embedded world of procedurally drawn faces (no downloads, deterministic).

``facebench toyfaces build OUT`` writes a training set and verification packs in the real formats so
that every command runs on a laptop with nothing to fetch. See ``docs/toyfaces.md``.
"""
