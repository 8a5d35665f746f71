# -*- coding: utf-8 -*-
"""An install that changes nothing never loads cryptography (the fleet's idempotent cost)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import subprocess
import sys

from ansible_collections.crdb.tls.plugins.module_utils import installer, pki

CHILD = r"""
import sys
from ansible_collections.crdb.tls.plugins.module_utils import installer
files = {}
for name in ("ca.crt", "node.crt", "node.key"):
    with open(sys.argv[2] + "/" + name, "rb") as handle:
        files[name] = handle.read()
result = installer.install(sys.argv[1], {n: files[n] for n in ("ca.crt", "node.crt")}, {"node.key": files["node.key"]},
                           layout="standard")
print(result["changed"], "cryptography" in sys.modules)
"""


def test_unchanged_install_does_not_import_cryptography(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    key = pki.generate_key("ecdsa", 256)
    ca = pki.load_ca(pki.certificates_pem([pki.generate_ca(key)]), pki.private_key_pem(key), "ca", "ca.key")
    node_key = pki.generate_key("ecdsa", 256)
    spec = pki.build_spec("node", hosts=["127.0.0.1", "localhost"])
    (src / "ca.crt").write_bytes(pki.certificates_pem([ca.certificate]))
    (src / "node.crt").write_bytes(pki.certificates_pem([pki.issue(spec, node_key.public_key(), ca)]))
    (src / "node.key").write_bytes(pki.private_key_pem(node_key))
    dest = str(tmp_path / "certs")
    env = dict(os.environ)

    def run():
        out = subprocess.run([sys.executable, "-c", CHILD, dest, str(src)], env=env, capture_output=True,
                             text=True, check=True, timeout=60)
        return out.stdout.split()

    assert run() == ["True", "True"]     # first install validates the set: cryptography is needed
    assert run() == ["False", "False"]   # nothing to change: a byte compare and a stat
    assert installer.STAGING_PREFIX not in "".join(os.listdir(dest))


NO_CRYPTO_CHILD = r"""
import json, sys
sys.modules["cryptography"] = None          # a node without python3-cryptography
from ansible_collections.crdb.tls.plugins.module_utils import installer, pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError
assert not pki.HAS_CRYPTOGRAPHY
files = {}
for name in ("ca.crt", "node.crt", "node.key"):
    with open(sys.argv[2] + "/" + name, "rb") as handle:
        files[name] = handle.read()
try:
    result = installer.install(sys.argv[1], {n: files[n] for n in ("ca.crt", "node.crt")},
                               {"node.key": files["node.key"]}, layout=sys.argv[3] or None)
    print(json.dumps({"changed": result["changed"], "problems": result["problems"]}))
except CrdbTlsError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def test_a_node_without_cryptography_still_gets_names_layout_and_permissions_checked(tmp_path):
    import json
    src = tmp_path / "src"
    src.mkdir()
    key = pki.generate_key("ecdsa", 256)
    ca = pki.load_ca(pki.certificates_pem([pki.generate_ca(key)]), pki.private_key_pem(key), "ca", "ca.key")
    node_key = pki.generate_key("ecdsa", 256)
    spec = pki.build_spec("node", hosts=["127.0.0.1"])
    (src / "ca.crt").write_bytes(pki.certificates_pem([ca.certificate]))
    (src / "node.crt").write_bytes(pki.certificates_pem([pki.issue(spec, node_key.public_key(), ca)]))
    (src / "node.key").write_bytes(pki.private_key_pem(node_key))

    def run(dest, layout=""):
        out = subprocess.run([sys.executable, "-c", NO_CRYPTO_CHILD, str(dest), str(src), layout],
                             env=dict(os.environ), capture_output=True, text=True, check=True, timeout=60)
        return json.loads(out.stdout)

    assert run(tmp_path / "ok", "standard") == {"changed": True, "problems": []}
    # The layout check needs no cryptography: split_node wants client.node.crt too.
    refused = run(tmp_path / "split", "split_node")
    assert "client.node.crt: missing (required by the split_node layout)" in refused["error"]
    assert not os.path.exists(tmp_path / "split" / "node.crt")


CHECKED_CHILD = r"""
import json, sys
from ansible_collections.crdb.tls.plugins.module_utils import installer
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError
names = sys.argv[3].split(",")
files = {}
for name in names:
    with open(sys.argv[2] + "/" + name, "rb") as handle:
        files[name] = handle.read()
try:
    result = installer.install(sys.argv[1], {n: files[n] for n in names if n.endswith(".crt")},
                               {n: files[n] for n in names if n.endswith(".key")}, layout="standard",
                               expected_hosts=["127.0.0.1"], content_checked=True)
    out = {"changed": result["changed"], "problems": result["problems"]}
except CrdbTlsError as exc:
    out = {"error": str(exc)}
out["cryptography_loaded"] = "cryptography" in sys.modules
print(json.dumps(out))
"""


def _signed_set(directory, hosts=("127.0.0.1",)):
    directory.mkdir()
    key = pki.generate_key("ecdsa", 256)
    ca = pki.load_ca(pki.certificates_pem([pki.generate_ca(key)]), pki.private_key_pem(key), "ca", "ca.key")
    node_key = pki.generate_key("ecdsa", 256)
    spec = pki.build_spec("node", hosts=list(hosts))
    (directory / "ca.crt").write_bytes(pki.certificates_pem([ca.certificate]))
    (directory / "node.crt").write_bytes(pki.certificates_pem([pki.issue(spec, node_key.public_key(), ca)]))
    (directory / "node.key").write_bytes(pki.private_key_pem(node_key))


def test_a_set_checked_on_the_controller_is_installed_without_loading_cryptography(tmp_path):
    import json
    _signed_set(tmp_path / "src")
    dest = str(tmp_path / "certs")

    def run(names):
        out = subprocess.run([sys.executable, "-c", CHECKED_CHILD, dest, str(tmp_path / "src"), names],
                             capture_output=True, text=True, check=True, timeout=60)
        return json.loads(out.stdout)

    assert run("ca.crt,node.crt,node.key") == {"changed": True, "problems": [], "cryptography_loaded": False}
    assert sorted(os.listdir(dest)) == ["ca.crt", "node.crt", "node.key"]
    # Names, layout and permissions are still checked on the node: a key open to others is fixed, not skipped.
    os.chmod(os.path.join(dest, "node.key"), 0o644)
    assert run("ca.crt,node.crt,node.key") == {"changed": True, "problems": [], "cryptography_loaded": False}
    assert stat.S_IMODE(os.stat(os.path.join(dest, "node.key")).st_mode) == 0o600


def test_files_already_on_the_node_get_the_content_check_the_controller_could_not_make(tmp_path):
    import json
    _signed_set(tmp_path / "src")
    _signed_set(tmp_path / "other")      # another CA, whose ca.crt is already on the node
    dest = tmp_path / "certs"
    dest.mkdir(mode=0o700)
    shutil.copy(str(tmp_path / "other" / "ca.crt"), str(dest / "ca.crt"))
    out = subprocess.run([sys.executable, "-c", CHECKED_CHILD, str(dest), str(tmp_path / "src"), "node.crt,node.key"],
                         capture_output=True, text=True, check=True, timeout=60)
    result = json.loads(out.stdout)
    assert result["cryptography_loaded"] is True
    assert result["error"].startswith("refusing to install into %s, the new set would not work" % dest)
    assert "node.crt: server side: does not verify against ca.crt" in result["error"]
    assert sorted(os.listdir(str(dest))) == ["ca.crt"]
