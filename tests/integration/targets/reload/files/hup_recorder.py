# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: a process named NAME that records who sends it SIGHUP.

Usage: hup_recorder.py NAME PIDFILE OUTFILE [SECONDS]

Sets its /proc/PID/comm to NAME, writes its pid to PIDFILE, then waits (at
most SECONDS, default 120) for one SIGHUP and writes ``uid=<sender uid>``
to OUTFILE. Standard library only; exits by itself when nobody signals it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import os
import signal
import sys


def main():
    name, pidfile, outfile = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    libc = ctypes.CDLL(None)
    libc.prctl(15, ctypes.c_char_p(name.encode()), 0, 0, 0)   # PR_SET_NAME
    with open(pidfile + ".tmp", "w") as handle:
        handle.write("%d\n" % os.getpid())
    os.rename(pidfile + ".tmp", pidfile)
    info = signal.sigtimedwait({signal.SIGHUP}, seconds)
    if info is not None:
        with open(outfile + ".tmp", "w") as handle:
            handle.write("uid=%d\n" % info.si_uid)
        os.rename(outfile + ".tmp", outfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
