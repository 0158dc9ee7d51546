"""Run ``facebench ARGS`` (with the test plugins) and kill -9 the process at a chosen point, for the rerun
contract's tests (``tests/test_rerun_contract.py``):

    python tests/rerun_kill.py K ARGS...

``K`` > 0: SIGKILL right after the K-th completed ``os.replace`` (every atomic write of facebench ends in
one: a file or folder just appeared under its name, the next has not); ``K`` = 0, or a K the command
never reaches: SIGKILL once the command has returned, before the interpreter exits (every file written,
nothing tidied by an exit). The process always dies by SIGKILL; a command that failed says so on stderr.
"""

from __future__ import annotations

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_target = int(sys.argv[1])
_count = 0
_replace = os.replace


def _counted(*args, **kwargs):
    global _count
    _replace(*args, **kwargs)
    _count += 1
    if _count == _target:
        os.kill(os.getpid(), signal.SIGKILL)


os.replace = _counted


def main() -> None:
    import test_rerun_contract as contract

    try:
        contract.cli_for_kill().main(sys.argv[2:])
    finally:
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
