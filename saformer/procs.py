"""Stopping cleanly: a command that is interrupted also ends the compilers and simulators it started.

Verilator's make, g++ (hls4ml's C simulation) and the yowasp tools run as child processes, some
of them with children of their own. Ctrl-C in a terminal reaches the whole process group, but a
``kill PID`` (SIGTERM), a hang-up or a scheduler's stop reaches only this process, and the
children would go on as orphans. :func:`stop_children_on_exit` handles SIGINT, SIGTERM and
SIGHUP: it ends every descendant (SIGTERM, then SIGKILL after a grace period) and raises
:class:`Interrupted`, which unwinds the stage like Ctrl-C does. A SIGKILL of this process cannot
be handled; its children then finish on their own.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

import psutil

HANDLED = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class Interrupted(KeyboardInterrupt):
    """The command was asked to stop by a signal; ``exit_status`` is the shell's 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_status = HANDLED.get(signum, 128 + signum)


def end_descendants(grace_s: float = 3.0) -> list[int]:
    """Terminate every descendant of this process (the whole tree, collected before any dies, so
    none escapes by being re-parented); returns their pids."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return [c.pid for c in children]


@contextlib.contextmanager
def stop_children_on_exit() -> Iterator[None]:
    """Within this block, a stop signal ends the child processes and raises :class:`Interrupted`."""

    def handler(signum, _frame):
        end_descendants()
        raise Interrupted(signum)

    previous = {}
    try:
        for sig in HANDLED:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        previous = {}
    try:
        yield
    except BaseException:
        end_descendants()
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
