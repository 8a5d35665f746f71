# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A hostile certs dir owner races the root-run install (issue 14, its first three attacks).

Each test makes a real unprivileged user (useradd; removed after) who owns
the certs dir's parent, as the cockroach user owns /var/lib/cockroach. The
install runs as root through ``ansible-playbook`` (local connection) with
that user as owner, while a process running AS THAT USER (``setpriv
--reuid``) races it in a bounded loop (a count and a time limit):

(a) staging: it plants links in any staging dir it can find in the certs
    dir and fills the dir with junk to stretch the window;
(b) it swaps the certs dir for a link to a root-owned directory;
(c) it plants links inside the certs dir: ``ca.crt`` to a root-owned file
    with the same content (only owner and mode fixes would go through), and,
    with keys made on the nodes, ``node.key`` to a root-only PEM key;
(d) it plants links to root-only files and a FIFO where the root-run
    checks (``certs_info``, ``expiry_check``, ``reload``'s served check) read.

Every test snapshots a root-only target dir (and the PKI dir) before and
after: content, owner and mode of every entry must be unchanged, and a
refusal must name the link. Needs root, useradd and setpriv.
"""

import hashlib
import os
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from peerlib import ansible_tool, collections_path

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "userdel", "setpriv")),
    reason="needs root, useradd and setpriv (a real unprivileged owner races a root-run install)")

PLAYBOOK_TIMEOUT = 300
RUNS = 2                 # installs per race
RACE_ITERATIONS = 10 ** 7  # the attacker's loop is bounded by count ...
RACE_SECONDS = 120       # ... and by time
JUNK_FILES = 40          # (a): 40 x 1 MiB of junk beside the certificates
HOSTS = ["node1.example.com", "127.0.0.1"]

PKI_PLAYBOOK = """\
---
- name: A CA and one node's certificates, issued on the controller
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Create the CA
      crdb.tls.ca:
        path: "{{ pki }}"
        key_type: ecdsa
    - name: Issue the node's set
      crdb.tls.issue_fleet:
        pki_dir: "{{ pki }}"
        key_type: ecdsa
        users: [root]
        nodes:
          node1: {sans: [node1.example.com, 127.0.0.1]}
"""

INSTALL_PLAYBOOK = """\
---
- name: Install as root into a certs dir its owner controls
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Install
      crdb.tls.install:
        src: "{{ pki }}/issued/node1"
        dest: "{{ certs }}"
        owner: "{{ owner }}"
        process_user: "{{ owner }}"
        layout: standard
        expected_hosts: [node1.example.com, 127.0.0.1]
"""

NODE_KEY_PLAYBOOK = """\
---
- name: Keys made on the node, as root, in a certs dir its owner controls
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Make or keep the node's keys
      crdb.tls.node_key:
        certs_dir: "{{ certs }}"
        layout: standard
        hosts: [node1.example.com, 127.0.0.1]
        owner: "{{ owner }}"
        key_type: ecdsa
"""

READ_PLAYBOOK = """\
---
- name: Read, as root, a certs dir its owner controls
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Judge the certs dir
      crdb.tls.certs_info:
        path: "{{ certs }}"
        process_user: "{{ owner }}"
      register: info
    - name: Check its expiry
      crdb.tls.expiry_check:
        host: node1
        dirs: [{path: "{{ certs }}", process_user: "{{ owner }}"}]
        fail_on_problems: false
      register: expiry
    - name: Show both
      ansible.builtin.debug:
        msg: "{{ {'info': info, 'expiry': expiry} | to_json }}"
    - name: The served check reads a planted link
      crdb.tls.reload:
        process_name: crdb-tls-no-such-process
        missing_ok: true
        verify_address: 127.0.0.1:1
        cert_file: "{{ certs }}/client.spy.crt"
"""

# Runs as the unprivileged owner (system python3, stdlib only). argv: mode certs target stop
ATTACKER = r'''
import os, sys, time
mode, certs, target, stop = sys.argv[1:5]
iterations, seconds, junk = int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
deadline = time.monotonic() + seconds
home = os.path.dirname(certs)
hits = 0

def quiet(call, *args):
    try:
        call(*args)
        return True
    except OSError:
        return False

if mode == "staging":
    for i in range(junk):
        with open(os.path.join(certs, "junk-%02d.bin" % i), "wb") as handle:
            handle.write(b"\0" * (1024 * 1024))
open(os.path.join(home, "ready"), "w").close()
for i in range(iterations):
    if os.path.exists(stop) or time.monotonic() > deadline:
        break
    if mode == "staging":
        # Whatever staging dir shows up in the certs dir: every name in it points outside.
        try:
            names = os.listdir(certs)
        except OSError:
            continue
        for entry in names:
            if entry.startswith(".crdb-tls-staging-"):
                staging = os.path.join(certs, entry)
                for name in names + ["planted.crt"]:
                    if quiet(os.symlink, os.path.join(target, "pwned-" + name), os.path.join(staging, name)):
                        hits += 1
    elif mode == "swap":
        real = certs + ".real"
        if quiet(os.rename, certs, real):
            quiet(os.symlink, os.path.join(target, "sub"), certs)
            time.sleep(0.002)
            quiet(os.unlink, certs)
            quiet(os.rename, real, certs)
            hits += 1
    elif mode == "links":
        # ca.crt swapped for a link to a root-owned copy of the same content, again and again.
        path = os.path.join(certs, "ca.crt")
        tmp = os.path.join(certs, "ca.crt.swap")
        quiet(os.unlink, tmp)
        if quiet(os.symlink, os.path.join(target, "ca.crt"), tmp) and quiet(os.rename, tmp, path):
            hits += 1
        time.sleep(0.001)
with open(os.path.join(home, "hits"), "w") as handle:
    handle.write(str(hits))
'''


def _env():
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    })
    return env


def _playbook(text, where, extra):
    path = os.path.join(where, "play-%s.yml" % uuid.uuid4().hex[:8])
    with open(path, "w") as handle:
        handle.write(text)
    cmd = [ansible_tool(), "-i", "localhost,", path]
    for key, value in sorted(extra.items()):
        cmd += ["-e", "%s=%s" % (key, value)]
    proc = subprocess.run(cmd, env=_env(), cwd=where, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=PLAYBOOK_TIMEOUT, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def snapshot(root):
    """Every entry under ``root`` (itself included): kind, content of files, mode, owner, group; links not followed."""
    out = {}
    for base, dirs, names in os.walk(root):
        for name in [""] + dirs + names if base == root else dirs + names:
            path = os.path.join(base, name) if name else base
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    content = handle.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), content, stat.S_IMODE(st.st_mode),
                                                st.st_uid, st.st_gid)
    return out


@pytest.fixture
def owner():
    """A real unprivileged user (and its group), removed afterwards."""
    name = "crdbh%s" % uuid.uuid4().hex[:6]
    subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", "-d", "/nonexistent", name],
                   check=True, capture_output=True, timeout=30)
    try:
        import pwd
        entry = pwd.getpwnam(name)
        yield name, entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30, check=False)
        subprocess.run(["groupdel", name], capture_output=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def issued_pki(tmp_path_factory):
    """A PKI dir with a CA and one node's set, issued once for the module (each test gets a copy)."""
    where = str(tmp_path_factory.mktemp("hostile-pki"))
    pki = os.path.join(where, "pki")
    os.mkdir(pki, 0o700)
    rc, out = _playbook(PKI_PLAYBOOK, where, {"pki": pki})
    assert rc == 0, "issuing failed (rc %d):\n%s" % (rc, out[-4000:])
    return pki


@pytest.fixture
def world(owner, issued_pki):
    """``{base, home, certs, target, pki}``: a root-owned base the owner can traverse; the owner's home (the certs
    dir's parent); a root-only target; a PKI dir with one node's set issued."""
    name, uid, gid = owner
    base = tempfile.mkdtemp(prefix="crdb-hostile-", dir="/var/tmp")
    try:
        os.chmod(base, 0o755)
        home = os.path.join(base, "var-lib-cockroach")
        os.mkdir(home, 0o755)
        os.chown(home, uid, gid)
        target = os.path.join(base, "root-only")
        os.mkdir(target, 0o755)
        os.mkdir(os.path.join(target, "sub"), 0o755)
        for rel, data, mode in (("secret", b"root's own\n", 0o600), ("sub/keep", b"keep\n", 0o644)):
            with open(os.path.join(target, rel), "wb") as handle:
                handle.write(data)
            os.chmod(os.path.join(target, rel), mode)
        pki = os.path.join(base, "pki")
        shutil.copytree(issued_pki, pki, symlinks=True)
        with open(os.path.join(pki, "issued", "node1", "ca.crt"), "rb") as src:
            ca_pem = src.read()
        with open(os.path.join(target, "ca.crt"), "wb") as handle:   # root's copy of the same content
            handle.write(ca_pem)
        os.chmod(os.path.join(target, "ca.crt"), 0o600)
        script = os.path.join(base, "attacker.py")
        with open(script, "w") as handle:
            handle.write(ATTACKER)
        os.chmod(script, 0o644)
        yield {"base": base, "home": home, "certs": os.path.join(home, "certs"), "target": target, "pki": pki,
               "owner": name, "uid": uid, "gid": gid, "script": script}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _install(world):
    return _playbook(INSTALL_PLAYBOOK, world["base"], {"pki": world["pki"], "certs": world["certs"],
                                                       "owner": world["owner"]})


def _protected(world):
    return {"target": snapshot(world["target"]), "pki": snapshot(world["pki"])}


def _show(state, content_changed):
    if state is None:
        return None
    extra = " content" if content_changed else ""
    return "kind %o mode %04o uid %d gid %d%s" % (state[0], state[2], state[3], state[4], extra)


def _changes(before, after):
    """What changed outside the certs dir, one line per entry (kind, owner, mode; never content)."""
    out = []
    for where in sorted(before):
        for name in sorted(set(before[where]) | set(after[where])):
            old, new = before[where].get(name), after[where].get(name)
            if old != new:
                content = old is not None and new is not None and old[1] != new[1]
                out.append("%s/%s: %s -> %s" % (where, name, _show(old, False), _show(new, content)))
    return out


def _race(world, mode, runs=RUNS):
    """Run the install ``runs`` times while the owner attacks in ``mode``; returns [(rc, output)] and the hits."""
    stop = os.path.join(world["base"], "stop")
    python3 = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    cmd = ["setpriv", "--reuid", str(world["uid"]), "--regid", str(world["gid"]), "--clear-groups",
           python3, world["script"], mode, world["certs"], world["target"], stop,
           str(RACE_ITERATIONS), str(RACE_SECONDS), str(JUNK_FILES)]
    attacker = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    results = []
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(world["home"], "ready")):
            assert attacker.poll() is None, "the attacker died: %s" % attacker.stdout.read().decode()
            assert time.monotonic() < deadline, "the attacker never started"
            time.sleep(0.05)
        for _run in range(runs):
            results.append(_install(world))
    finally:
        open(stop, "w").close()
        try:
            attacker.wait(timeout=RACE_SECONDS + 30)
        except subprocess.TimeoutExpired:
            attacker.kill()
            attacker.wait(timeout=10)
        os.unlink(stop)
    assert attacker.returncode == 0, "the attacker failed: %s" % attacker.stdout.read().decode()
    with open(os.path.join(world["home"], "hits")) as handle:
        hits = int(handle.read())
    return results, hits


def _failures(results):
    return [out for rc, out in results if rc != 0]


def _first_install(world):
    """The certs dir made by a first, quiet install (owner = the unprivileged user)."""
    rc, out = _install(world)
    assert rc == 0, "first install failed (rc %d):\n%s" % (rc, out[-4000:])
    assert os.lstat(world["certs"]).st_uid == world["uid"]


# --------------------------------------------------------------------------- (a) staging

def test_a_staging_race_with_links_and_junk_writes_nothing_outside(world):
    _first_install(world)
    # Drift to fix, so every run validates a staged set: the key's mode.
    before = _protected(world)
    for _round in range(RUNS):
        os.chmod(os.path.join(world["certs"], "node.key"), 0o640)
        results, _hits = _race(world, "staging", runs=1)
        assert _failures(results) == [], _failures(results)[0][-4000:]
    assert _changes(before, _protected(world)) == []
    # Staging happened outside the owner's reach: nothing of it in the certs dir, nothing pointed outside.
    names = os.listdir(world["certs"])
    assert not [n for n in names if n.startswith(".crdb-tls-staging-")]
    assert not [n for n in os.listdir(world["target"]) if n.startswith("pwned-")]
    assert stat.S_IMODE(os.stat(os.path.join(world["certs"], "node.key")).st_mode) == 0o600


# --------------------------------------------------------------------------- (b) a linked certs dir

def test_a_certs_dir_swapped_for_a_link_is_refused_naming_it(world):
    before = _protected(world)
    os.symlink(os.path.join(world["target"], "sub"), world["certs"])
    rc, out = _install(world)
    assert rc != 0
    assert "certs dir %s is a symbolic link: refusing to follow it" % world["certs"] in out, out[-4000:]
    assert _changes(before, _protected(world)) == []
    os.unlink(world["certs"])


def test_a_certs_dir_swapped_for_a_link_during_installs_writes_nothing_outside(world):
    _first_install(world)
    before = _protected(world)
    for _round in range(RUNS):
        os.chmod(os.path.join(world["certs"], "node.key"), 0o640)
        results, hits = _race(world, "swap", runs=1)
        assert hits > 0, "the attacker never swapped the certs dir"
        for out in _failures(results):
            assert "symbolic link" in out or "does not exist" in out, out[-4000:]
    assert _changes(before, _protected(world)) == []


# --------------------------------------------------------------------------- (c) links inside the certs dir

def test_a_linked_ca_crt_is_refused_naming_it_and_never_chowned(world):
    _first_install(world)
    before = _protected(world)
    ca = os.path.join(world["certs"], "ca.crt")
    os.unlink(ca)
    os.symlink(os.path.join(world["target"], "ca.crt"), ca)
    rc, out = _install(world)
    assert rc != 0
    assert "file %s is a symbolic link: refusing to use it" % ca in out, out[-4000:]
    assert _changes(before, _protected(world)) == []


def test_a_ca_crt_swapped_for_links_during_installs_writes_nothing_outside(world):
    _first_install(world)
    before = _protected(world)
    results, hits = _race(world, "links")
    assert hits > 0, "the attacker never planted its link"
    for out in _failures(results):
        assert "ca.crt is a symbolic link" in out, out[-4000:]
    assert _changes(before, _protected(world)) == []


def test_a_linked_node_key_with_keys_made_on_the_node_is_refused_never_adopted(world):
    os.mkdir(world["certs"], 0o700)
    os.chown(world["certs"], world["uid"], world["gid"])
    secret = os.path.join(world["target"], "root.pem")
    with open(os.path.join(world["pki"], "ca.key"), "rb") as src:   # any root-only PEM key
        data = src.read()
    with open(secret, "wb") as handle:
        handle.write(data)
    os.chmod(secret, 0o600)
    before = _protected(world)
    link = os.path.join(world["certs"], "node.key")
    os.symlink(secret, link)
    rc, out = _playbook(NODE_KEY_PLAYBOOK, world["base"], {"certs": world["certs"], "owner": world["owner"]})
    assert rc != 0
    assert "file %s is a symbolic link: refusing to use it" % link in out, out[-4000:]
    assert _changes(before, _protected(world)) == []
    assert sorted(os.listdir(world["certs"])) == ["node.key"]


# --------------------------------------------------------------------------- (d) root-run reads

def test_root_run_checks_never_read_through_a_planted_link_or_block_on_a_fifo(world):
    _first_install(world)
    spy = os.path.join(world["target"], "spy.crt")    # a root-only certificate the owner cannot read
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", os.path.join(world["target"], "spy.key"), "-out", spy, "-subj", "/CN=spy",
                    "-days", "2"], check=True, capture_output=True, timeout=60)
    os.chmod(spy, 0o600)
    with open(spy, "rb") as handle:
        spy_pem = handle.read().decode("ascii")
    link = os.path.join(world["certs"], "client.spy.crt")
    fifo = os.path.join(world["certs"], "client.fifo.crt")
    setpriv = ["setpriv", "--reuid", str(world["uid"]), "--regid", str(world["gid"]), "--clear-groups"]
    subprocess.run(setpriv + ["ln", "-s", spy, link], check=True, timeout=30)
    subprocess.run(setpriv + ["mkfifo", fifo], check=True, timeout=30)
    before = _protected(world)
    rc, out = _playbook(READ_PLAYBOOK, world["base"], {"certs": world["certs"], "owner": world["owner"]})
    refusal = "%s is a symbolic link in a directory others can write to: refusing to follow it" % link
    assert "certificate " + refusal in out, out[-6000:]
    assert "certificate %s is a FIFO: refusing to use it" % fifo in out, out[-6000:]
    # Nothing of the root-only file came through: neither its PEM nor its fingerprint.
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(spy_pem)).hexdigest()
    assert spy_pem.splitlines()[1] not in out
    assert fingerprint not in out.lower().replace(":", ""), "the linked certificate was read"
    # The served check refuses to read the link it was pointed at, naming it.
    assert rc != 0 and "cert_file " + refusal in out, out[-6000:]
    assert _changes(before, _protected(world)) == []
