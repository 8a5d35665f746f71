#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: reload
short_description: Make running CockroachDB nodes reload their certificates with SIGHUP
version_added: 0.1.0
description:
  - Finds the processes whose name is exactly O(process_name) (C(/proc/PID/comm), as C(pkill -x cockroach)
    does) and sends each SIGHUP as the user that owns it, which CockroachDB requires. When the module runs as
    root, each signal comes from a child process that dropped to the owner's uid and gid.
  - CockroachDB then reloads every certificate in its certs dir without a restart. It does not check that a
    certificate matches its key or chains to the CA on reload, so validate the certs dir first (the
    C(crdb.tls.node) role only reloads after M(crdb.tls.install) validated the set).
  - With O(verify_address), waits until the DB Console at that address serves the certificate in
    O(cert_file) (C(ui.crt), or C(node.crt) without one), and fails after O(timeout) seconds otherwise.
author:
  - crdb.tls contributors (@crdb-tls)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists the processes it would signal.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Linux (reads /proc).
options:
  process_name:
    description:
      - Exact process name to signal.
    type: str
    default: cockroach
  missing_ok:
    description:
      - Succeed without change when no such process runs (a node that is stopped picks the files up at start).
    type: bool
    default: true
  verify_address:
    description:
      - C(host:port) of the DB Console (C(--http-addr)) to watch after the signal.
    type: str
  cert_file:
    description:
      - Certificate the node must serve at O(verify_address) after the reload. Required with O(verify_address).
    type: path
  timeout:
    description:
      - Seconds to wait for O(verify_address) to serve O(cert_file).
    type: int
    default: 30
requirements:
  - Python 3 on the host, nothing else (no C(cryptography)).
seealso:
  - module: crdb.tls.install
"""

EXAMPLES = r"""
- name: Reload every cockroach process on the host
  crdb.tls.reload:
  become: true

- name: Reload and wait until the DB Console serves the new ui.crt
  crdb.tls.reload:
    verify_address: 127.0.0.1:8080
    cert_file: /var/lib/cockroach/certs/ui.crt
    timeout: 20
  become: true
"""

RETURN = r"""
processes:
  description: The processes signalled (or, in check mode, that would be).
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Process id.
      type: int
    uid:
      description: Uid of the owner, which sent the signal.
      type: int
    owner:
      description: User name of the owner.
      type: str
  sample: [{"pid": 4242, "uid": 999, "owner": "cockroach"}]
signalled:
  description: How many processes were signalled.
  returned: always
  type: int
served_fingerprint_sha256:
  description: SHA-256 of the certificate served at O(verify_address) at the end.
  returned: when O(verify_address) is set
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import fileio, module_support, pem, reloader
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            process_name=dict(type="str", default="cockroach"),
            missing_ok=dict(type="bool", default=True),
            verify_address=dict(type="str"),
            cert_file=dict(type="path"),
            timeout=dict(type="int", default=30),
        ),
        required_by={"verify_address": ["cert_file"]},
        supports_check_mode=True,
    )

    def run(module):
        p = module.params
        expected = None
        if p["verify_address"]:
            reloader.split_address(p["verify_address"])
            # The first certificate's DER hash, from the PEM framing alone: no cryptography on the node.
            expected = pem.certificate_fingerprint(fileio.read_host_file(p["cert_file"], "cert_file"), p["cert_file"])
        result = reloader.reload(p["process_name"], p["missing_ok"], module.check_mode)
        if expected and result["signalled"] and not module.check_mode:
            ok, seen, error = reloader.wait_for_fingerprint(p["verify_address"], expected, p["timeout"])
            result["served_fingerprint_sha256"] = seen
            if not ok:
                raise CrdbTlsError(
                    "after SIGHUP, %s still does not serve %s (sha256 %s) after %ds: it serves %s%s"
                    % (p["verify_address"], p["cert_file"], expected, p["timeout"], seen or "nothing",
                       " (%s)" % error if error else ""))
        return result

    module_support.run(module, run, needs_cryptography=False)


if __name__ == "__main__":
    main()
