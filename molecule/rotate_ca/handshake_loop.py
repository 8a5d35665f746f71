"""Client loop of the rotate_ca scenario (runs on the client container).

Keeps opening mutual-TLS connections to every node's SQL port (the stand-in
`cockroach`, a TEST FIXTURE) with whatever certificates this client holds on
disk at that moment, and counts what happened, per node and per phase label:

- ``ok``: handshake done, server verified against ca.crt (hostname = the
  node's address), the stand-in answered ``OK cn=<user>``;
- ``failed``: the TLS handshake (or the connection) failed, or the answer was
  not ``OK``; the first messages are kept in ``errors``;
- ``torn``: the certificate and key read from disk did not belong together
  (the installer renames the new files one after the other, so a reader can
  fall between the two renames). This is not a handshake: the attempt is not
  made, and is retried at once with a fresh read. Counted apart, never as ok.

The files are read once per attempt (ca.crt, client cert, then key) into a
private scratch dir (removed when the loop stops), so one attempt uses one
consistent snapshot.

Usage: python3 handshake_loop.py STATE_DIR CERTS_DIR USER HOST:PORT [HOST:PORT ...]
       python3 handshake_loop.py --next-label STATE_DIR MIN NEW_LABEL
STATE_DIR/label holds the current phase label (written by side_effect.yml);
counts go to STATE_DIR/counts.json (atomically replaced, every 0.5 s);
creating STATE_DIR/stop ends the loop after a final write with "stopped": true.
--next-label waits (at most 120 s) until the loop counted MIN successful
handshakes with every node under the current label, then switches to
NEW_LABEL (side_effect.yml calls it between steps).
"""

import json
import os
import socket
import ssl
import sys
import tempfile
import time

MAX_ERRORS = 20


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def snapshot(certs_dir, user, scratch):
    """Read ca.crt, client.<user>.crt, client.<user>.key once; return their scratch paths."""
    names = ["ca.crt", "client.%s.crt" % user, "client.%s.key" % user]
    paths = []
    # Scratch names that are not *.key: the shared verifier reads every *.key on the host (test_fleet.py), and
    # would catch this copy half rewritten.
    for index, name in enumerate(names):
        target = os.path.join(scratch, "snapshot-%d.pem" % index)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(read(os.path.join(certs_dir, name)))
        paths.append(target)
    return paths


def attempt(address, paths, user):
    """``("ok" | "failed" | "torn", message)`` of one connection."""
    cafile, certfile, keyfile = paths
    host, port = address.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=cafile)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        return "torn", "cert/key read from disk do not match: %s" % exc
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as conn:
                data = b""
                while not data.endswith(b"\n") and len(data) < 4096:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
    except (OSError, ssl.SSLError) as exc:
        return "failed", "%s: %s" % (type(exc).__name__, exc)
    line = data.decode("utf-8", "replace").strip()
    if not line.startswith("OK cn=%s " % user):
        return "failed", "unexpected answer %r" % line
    return "ok", line


def next_label(state_dir, minimum, new):
    label_file = os.path.join(state_dir, "label")
    label = read(label_file).decode().strip()
    deadline = time.time() + 120
    counts = {}
    while True:
        try:
            counts = json.loads(read(os.path.join(state_dir, "counts.json")).decode())
        except (OSError, ValueError):
            counts = {"phases": {}, "addresses": [None]}
        phase = counts["phases"].get(label, {})
        if min(phase.get(a, {}).get("ok", 0) for a in counts["addresses"]) >= minimum:
            break
        if time.time() > deadline:
            sys.exit("fewer than %d handshakes with every node under label %s: %s" % (minimum, label, phase))
        time.sleep(0.2)
    with open(label_file + ".tmp", "w") as handle:
        handle.write(new + "\n")
    os.replace(label_file + ".tmp", label_file)
    print("label %s (%s) -> %s" % (label, json.dumps(phase, sort_keys=True), new))


def main():
    if sys.argv[1] == "--next-label":
        next_label(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    state_dir, certs_dir, user = sys.argv[1:4]
    addresses = sys.argv[4:]
    counts = {"addresses": addresses, "user": user, "certs_dir": certs_dir, "pid": os.getpid(),
              "started": time.time(), "stopped": False, "phases": {}, "errors": [], "torn_examples": [],
              "served": {}}
    out = os.path.join(state_dir, "counts.json")
    stop = os.path.join(state_dir, "stop")
    label_file = os.path.join(state_dir, "label")
    scratch = tempfile.mkdtemp(prefix="rot-loop-")
    last_write = 0.0
    while True:
        if os.path.exists(stop):
            break
        try:
            label = read(label_file).decode().strip() or "unlabelled"
        except OSError:
            label = "unlabelled"
        phase = counts["phases"].setdefault(label, {})
        for address in addresses:
            node = phase.setdefault(address, {"ok": 0, "failed": 0, "torn": 0})
            while True:
                try:
                    paths = snapshot(certs_dir, user, scratch)
                except OSError as exc:   # a file missing for a moment counts as a failure
                    outcome, message = "failed", "cannot read the certs: %s" % exc
                else:
                    outcome, message = attempt(address, paths, user)
                node[outcome] += 1
                if outcome == "torn":
                    if len(counts["torn_examples"]) < MAX_ERRORS:
                        counts["torn_examples"].append([label, address, message])
                    continue   # not a handshake: read again and try
                break
            if outcome == "failed" and len(counts["errors"]) < MAX_ERRORS:
                counts["errors"].append([label, address, message])
            if outcome == "ok":
                counts["served"][address] = message.rsplit("server_sha256=", 1)[-1]
        if time.time() - last_write > 0.5:
            write_atomic(out, counts)
            last_write = time.time()
    for name in os.listdir(scratch):
        os.unlink(os.path.join(scratch, name))
    os.rmdir(scratch)
    counts["stopped"] = True
    counts["ended"] = time.time()
    write_atomic(out, counts)


if __name__ == "__main__":
    main()
