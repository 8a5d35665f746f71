#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: certs_info
short_description: Read a CockroachDB certs dir as a node does and report its problems
version_added: 0.1.0
description:
  - Reads a certs dir with CockroachDB's own rules and reports each certificate as
    C(cockroach cert list) does (usage, file, key file, expiry, notes), plus a list of problems that would
    make a node or client fail, each naming the file at fault.
  - Problems found are file names CockroachDB would skip; unreadable or non-certificate PEM blocks;
    missing, unreadable or mismatched keys; key permissions beyond CockroachDB's rule (at most 0700, or
    0740 for a root-owned key whose group is the process user's primary group) for O(process_user);
    chains that do not verify against the right CA for the layout (C(node.crt) against C(ca.crt); client
    certificates, C(client.node.crt) included, against C(ca-client.crt) when present, else C(ca.crt));
    intermediates out of order; CN rules (CN=node, CN=<user>); wrong extended key usage; expected hosts
    missing from the SANs; CA keys present in the certs dir; expiry within O(min_remaining); and an
    update that was interrupted.
  - The judgement is Go's C(x509.Verify) and CockroachDB's loader and principal rules (the collection's
    C(verifier) module_utils), with chains built from an unordered pool of the certificates after the leaf, EKU
    restrictions nested through intermediates, pathLen, name constraints, the validity of every certificate in
    the chain; an unusable old root in a bundle, a skipped file name or a client name that is not a SQL user
    name are warnings, not problems.
  - A C(ui.crt) from a public CA without C(ca-ui.crt) is reported as a warning (browsers trust it;
    CockroachDB's own HTTP clients need its root as C(ca-ui.crt)); with C(ca-ui.crt) it must chain to it.
  - Every file is read through the certs dir's descriptor. A symbolic link is followed, as CockroachDB follows it,
    only in a dir that nobody but root and the user the module runs as can change; in a dir others can write to
    (the cockroach user's, read as root) a link is reported as unreadable, naming it, and never followed. A FIFO
    or device is reported without blocking.
  - Never changes anything.
author:
  - crdb.tls contributors (@crdb-tls)
requirements:
  - Python 3 and cryptography 3.4.8 or later on the host the module runs on (tested at 3.4.8, RHEL 9's), from the
    package C(python3-cryptography) on Debian, Ubuntu and RHEL, or C(pip install cryptography). Without it the
    module fails with a message naming that package.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - crdb.tls.identity
attributes:
  check_mode:
    support: full
    details: The module never changes anything.
  diff_mode:
    support: N/A
    details: The module never changes anything.
  platform:
    platforms: posix
options:
  path:
    description:
      - The certs dir, as given to C(cockroach start --certs-dir).
    type: path
    required: true
  process_user:
    description:
      - User (name or uid) the C(cockroach) process runs as. A root-owned 0740 key is allowed when its group is
        the gid the process runs with, that of a running C(cockroach) process when there is one, else
        O(process_group), else this user's primary group. Defaults to the owner of O(path).
    type: str
  process_group:
    description:
      - Group (name or gid) the C(cockroach) process runs with when it is not running (under systemd the unit's
        C(Group=)).
    type: str
  skip_key_permission_check:
    description:
      - The process runs with C(COCKROACH_SKIP_KEY_PERMISSION_CHECK=true), so key modes are not judged. Also
        read from a running C(cockroach) process's environment when this module can read it (as root).
    type: bool
    default: false
  layout:
    description:
      - Require the files of this layout. By default the layout is read from the files present.
    type: str
    choices: [standard, split_node, split_ca]
  expected_hosts:
    description:
      - Names and addresses that must be in the SANs of C(node.crt).
    type: list
    elements: str
    default: []
  expected_ui_hosts:
    description:
      - Names and addresses that must be in the SANs of C(ui.crt).
    type: list
    elements: str
    default: []
  min_remaining:
    description:
      - Report certificates that expire within this window (for example V(30d)) as problems.
    type: str
    default: 0h
  purpose:
    description:
      - V(node) for a CockroachDB node's certs dir, V(client) for a SQL client's (no node files needed; in the
        split_ca layout client certificates are not verified there, since the client CA is not in it).
    type: str
    choices: [node, client]
    default: node
  fail_on_problems:
    description:
      - Fail the task when any problem is found.
    type: bool
    default: false
seealso:
  - module: crdb.tls.certificate
"""

EXAMPLES = r"""
- name: Check a node's certs dir by CockroachDB's rules
  crdb.tls.certs_info:
    path: /var/lib/cockroach/certs
    process_user: cockroach
    expected_hosts: ["{{ inventory_hostname }}", "{{ ansible_host }}"]
    min_remaining: 30d
    fail_on_problems: true
  register: certs

- name: Show it as cockroach cert list would
  ansible.builtin.debug:
    msg: "{{ certs.table.split('\n') }}"
"""

RETURN = r"""
certificates:
  description: One entry per certificate file CockroachDB would load.
  returned: success
  type: list
  elements: dict
  contains:
    usage:
      description: What CockroachDB uses the file for (CA, Client CA, Node, UI, Client...).
      type: str
    file:
      description: Certificate file name.
      type: str
    key_file:
      description: Key file name (empty for CA files).
      type: str
    expires:
      description: Expiry as C(cockroach cert list) prints it.
      type: str
    not_after:
      description: Expiry, ISO 8601 UTC.
      type: str
    days_left:
      description: Whole days until expiry.
      type: int
    notes:
      description: Number of certificates, addresses, user.
      type: str
    error:
      description: The problems of this file, joined, or empty.
      type: str
    serial:
      description: Serial of the first certificate, hex.
      type: str
    subject:
      description: Subject of the first certificate.
      type: str
    sans:
      description: SANs of the first certificate.
      type: list
      elements: str
    fingerprint_sha256:
      description: SHA-256 fingerprint of the first certificate.
      type: str
  sample:
    - usage: Node
      file: node.crt
      key_file: node.key
      expires: "2031/12/03 18:44"
      notes: "num certs: 1, addresses: node1,127.0.0.1"
      error: ""
problems:
  description: Every problem found that CockroachDB (or the collection's policy) refuses, each starting with the
    file at fault. For display; read RV(records) for the fields.
  returned: success
  type: list
  elements: str
  sample: ["node.crt: key node.key: mode 0644 exceeds -rwx------"]
warnings_found:
  description: What CockroachDB accepts but is worth saying (a skipped file, an expired old root in a bundle).
  returned: success
  type: list
  elements: str
records:
  description: Every problem and warning as a record.
  returned: success
  type: list
  elements: dict
  contains:
    file:
      description: The file at fault.
      type: str
    code:
      description: What kind of problem (C(chain), C(principal), C(key_permissions), C(bad_tenant_id), ...).
      type: str
    message:
      description: What is wrong.
      type: str
    effect:
      description: V(load) (CockroachDB refuses to load or reload the dir), V(handshake) (it loads, a handshake
        or authentication fails) or V(warning).
      type: str
verdict:
  description:
    - What a CockroachDB node would do with the dir (purpose V(node) only). C(load) says whether it loads; when
      it does, C(node) (node-to-node, when C(node.crt) exists), C(ui) (the DB Console's certificate, when
      C(ui.crt) or C(node.crt) exists), C(clients) (each C(client.<name>.crt) presented to this node, with
      C(user), who CockroachDB authenticates it as) and C(tenants) (each C(client-tenant.<id>.crt)).
  returned: success and purpose is node
  type: dict
  sample:
    load: {ok: true, error: ""}
    node: {ok: true, error: ""}
    ui: {ok: true, error: ""}
    clients: {root: {ok: true, error: "", user: root}}
    tenants: {}
ok:
  description: True when no problem was found.
  returned: success
  type: bool
layout:
  description: The layout checked (given, or read from the files present).
  returned: success
  type: str
  sample: standard
table:
  description: The certificates as a C(cockroach cert list) table.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import certsdir, module_support, verifier


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            process_user=dict(type="str"),
            layout=dict(type="str", choices=["standard", "split_node", "split_ca"]),
            expected_hosts=dict(type="list", elements="str", default=[]),
            expected_ui_hosts=dict(type="list", elements="str", default=[]),
            min_remaining=dict(type="str", default="0h"),
            fail_on_problems=dict(type="bool", default=False),
            purpose=dict(type="str", choices=["node", "client"], default="node"),
            process_group=dict(type="str"),
            skip_key_permission_check=dict(type="bool", default=False),
            identity=verifier.IDENTITY_OPTION_SPEC,
        ),
        supports_check_mode=True,
    )

    def info(module):
        p = module.params
        report = certsdir.inspect(p["path"], process_user=p["process_user"], expected_hosts=p["expected_hosts"],
                                  expected_ui_hosts=p["expected_ui_hosts"], min_remaining=p["min_remaining"],
                                  layout=p["layout"], purpose=p["purpose"], identity=p["identity"],
                                  process_group=p["process_group"],
                                  skip_key_permission_check=p["skip_key_permission_check"])
        result = {
            "changed": False,
            "certificates": report["entries"],
            "problems": report["problems"],
            "warnings_found": report["warnings"],
            "records": [r.as_dict() for r in report["records"]],
            "verdict": report["verdict"],
            "ok": not report["problems"],
            "layout": report["layout"],
            "table": certsdir.format_table(report),
        }
        if p["fail_on_problems"] and report["problems"]:
            module.fail_json(msg="%d problem(s) in %s: %s" % (len(report["problems"]), p["path"],
                                                              "; ".join(report["problems"])), **result)
        return result

    module_support.run(module, info)


if __name__ == "__main__":
    main()
