# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: a TLS server named NAME that serves CERTS_DIR/node.crt and reloads it on SIGHUP.

Usage: tls_hup_server.py NAME CERTS_DIR PORTFILE [SECONDS]

Sets its /proc/PID/comm to NAME, listens on 127.0.0.1 on a port the kernel
picks and writes ``<pid> <port>`` to PORTFILE. Every connection gets a TLS
handshake with the certificate and key read at start or at the last SIGHUP
(as CockroachDB re-reads its certs dir). Standard library only (no
cryptography), so it runs under the same bare Python as the modules under
test; exits by itself after SECONDS (default 120).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import os
import select
import signal
import socket
import ssl
import sys
import time


def context(certs_dir):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certs_dir, "node.crt"), os.path.join(certs_dir, "node.key"))
    return ctx


def main():
    name, certs_dir, portfile = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    libc = ctypes.CDLL(None)
    libc.prctl(15, ctypes.c_char_p(name.encode()), 0, 0, 0)   # PR_SET_NAME
    state = {"reload": False}

    def on_hup(_signum, _frame):
        state["reload"] = True

    signal.signal(signal.SIGHUP, on_hup)
    ctx = context(certs_dir)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    with open(portfile + ".tmp", "w") as handle:
        handle.write("%d %d\n" % (os.getpid(), listener.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if state["reload"]:
            state["reload"] = False
            ctx = context(certs_dir)
        try:
            ready, _w, _x = select.select([listener], [], [], 0.2)
        except InterruptedError:
            continue
        if not ready:
            continue
        conn, _addr = listener.accept()
        conn.settimeout(5)
        try:
            with ctx.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
