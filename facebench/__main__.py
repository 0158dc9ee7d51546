"""``python -m facebench`` is the ``facebench`` command."""

from .cli import main

if __name__ == "__main__":
    main()
