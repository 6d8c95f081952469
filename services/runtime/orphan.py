"""A service process that `orderbus up` started ends when `orderbus up` does, however it ends.

The supervisor starts each child in a session of its own (so that Ctrl-C reaches the
supervisor only, which stops the children in order) and names itself in
`ORDERBUS_SUPERVISOR_PID`. A child then asks Linux for SIGTERM when its parent dies
(`PR_SET_PDEATHSIG`): a supervisor killed with SIGKILL, or crashed, leaves no orphan serving
on its ports; the child's own shutdown deadline bounds how long it takes. Elsewhere than on
Linux the request is skipped, and an orphan must be stopped by hand.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

SUPERVISOR_ENV = "ORDERBUS_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    expected = os.environ.get(SUPERVISOR_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot ask to die with the supervisor: errno %d", ctypes.get_errno())
        return
    # The supervisor may have died before the request: then nobody will send the signal.
    if str(os.getppid()) != expected:
        log.warning("the supervisor (pid %s) is gone: not starting", expected)
        raise SystemExit(1)
