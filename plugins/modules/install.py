#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: install
short_description: Install a host's CockroachDB certificates and keys in one round trip, validated first
version_added: 0.1.0
description:
  - Puts certificate and key files into a CockroachDB certs dir with the right owner, group and mode, in one
    module call per host. Certificates get mode 0644, keys 0600 owned by O(key_owner) (or 0640 when the key
    owner is root and O(key_group) is set, CockroachDB's root-owned exception), the dir O(dir_mode).
  - Before anything changes, the new set is assembled with the certificates and keys already there in a staging
    directory only the user running the module can enter (a new temp dir outside O(dest)) and read with the same
    rules as M(crdb.tls.certs_info). If a file this task manages would have
    a problem (key mismatch, wrong CA for the layout, CN or EKU rules, SANs missing O(expected_hosts),
    permissions refused for O(process_user)), the task fails and nothing is changed.
  - Files are then written as one journaled set (owner-only temporary files in the certs dir, fsync, rename);
    a run interrupted between two renames is completed by the next run, and a rename refused half-way rolls the
    set back. Temp files and staging dirs a crashed run left are removed and reported in RV(reasons). Files it
    does not manage are never touched.
  - No link is followed. O(dest) and its parents are opened one component at a time without following links (a
    link on the way only where no other user can have planted it); O(dest) itself, and any certificate or key
    file read or written in it, must not be a link or anything but a regular file, else the task fails naming
    it.
  - The action plugin reads O(src) on the controller and sends the contents with the module; key contents are
    marked C(no_log) and never appear in output, even with C(-vvv).
author:
  - crdb.tls contributors (@crdb-tls)
requirements:
  - Python 3 on the target host. Without cryptography there, the node checks names, layout, owners and
    permissions and leaves the content checks to the controller (the action plugin makes them before anything
    is sent).
  - cryptography 3.4.8 or later on the host (C(python3-cryptography)) only to install a certificate sent without
    its key (keys made on the host), and, where it is installed, the node checks the content of a certs dir that
    holds other certificates or keys again.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff lists the files that change (names and certificate fingerprints, never key content).
  platform:
    platforms: posix
options:
  src:
    description:
      - Directory on the controller whose files are installed (for example what M(crdb.tls.issue_fleet) issued
        for this host). Hidden files are skipped. Mutually exclusive with O(certificates) and O(keys).
    type: path
  files:
    description:
      - Only these file names from O(src).
    type: list
    elements: str
  planned:
    description:
      - In check mode only - the file names of O(src) that M(crdb.tls.issue_fleet) would issue or re-issue
        (its C(hosts.<host>.planned) or C(users.<user>.planned) result). They are reported as changed, with a
        diff, instead of being compared (and validated) as they are in O(src) now, since the check run did not
        write them. Ignored outside check mode.
    type: list
    elements: str
  certificates:
    description:
      - Certificate files to install, name to base64 of the content. Set by the action plugin from O(src).
    type: dict
    default: {}
  keys:
    description:
      - Key files (C(.key), C(.key.pk8)) to install, name to base64 of the content. Set by the action plugin.
    type: dict
    default: {}
  dest:
    description:
      - The certs dir on the host. Created (with its parents) when missing.
    type: path
    required: true
  owner:
    description:
      - Owner of the certs dir and the files.
    type: str
  group:
    description:
      - Group of the certs dir and the files. Defaults to the primary group of O(owner).
    type: str
  key_owner:
    description:
      - Owner of key files when it differs from O(owner), for example V(root).
    type: str
  key_group:
    description:
      - Group of key files when it differs from O(group).
    type: str
  dir_mode:
    description:
      - Mode of the certs dir.
    type: raw
    default: "0700"
  process_user:
    description:
      - User the cockroach process runs as, for the key permission rule. Defaults to the owner of O(dest).
    type: str
  layout:
    description:
      - Require the files of this layout in the resulting dir.
    type: str
    choices: [standard, split_node, split_ca]
  expected_hosts:
    description:
      - Names and addresses C(node.crt) must cover.
    type: list
    elements: str
    default: []
  expected_ui_hosts:
    description:
      - Names and addresses C(ui.crt) must cover.
    type: list
    elements: str
    default: []
  validate:
    description:
      - Validate the new set before installing it (and report the whole dir after).
    type: bool
    default: true
  content_checked:
    description:
      - Set by the action plugin, whatever the task says - V(true) once it checked the content of the set read from
        O(src) on the controller (or found that check recorded for the same bytes and parameters).
      - The node then leaves out the content checks (chains, key match, names, EKUs, validity) while the certs dir
        holds no certificate or key beyond the files sent, and does not load cryptography; names, layout, owners
        and permissions are still checked there.
    type: bool
    default: false
  purpose:
    description:
      - V(node) for a CockroachDB node's certs dir, V(client) for a SQL client's (no node files needed; in the
        split_ca layout client certificates are not verified there, since the client CA is not in it).
    type: str
    choices: [node, client]
    default: node
seealso:
  - module: crdb.tls.issue_fleet
  - module: crdb.tls.reload
  - module: crdb.tls.certs_info
"""

EXAMPLES = r"""
- name: Install what was issued for this node, then reload when anything changed
  crdb.tls.install:
    src: "/srv/crdb-pki/issued/{{ inventory_hostname }}"
    dest: /var/lib/cockroach/certs
    owner: cockroach
    group: cockroach
    process_user: cockroach
    layout: standard
    expected_hosts: ["{{ inventory_hostname }}"]
  become: true
  notify: Reload cockroach
"""

RETURN = r"""
reasons:
  description: Why anything changed.
  returned: always
  type: list
  elements: str
  sample: ["node.crt content differs", "node.key content differs"]
changed_files:
  description: Files written or whose owner or mode was fixed.
  returned: success
  type: list
  elements: str
content_changed:
  description: Whether any file's content changed (what a reload is needed for).
  returned: success
  type: bool
fingerprints:
  description: SHA-256 of each installed certificate file's leaf.
  returned: success
  type: dict
problems:
  description: Problems of the whole certs dir after the install (files not managed here included).
  returned: success
  type: list
  elements: str
dest:
  description: The certs dir.
  returned: success
  type: str
"""

import base64
import binascii

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import installer, module_support
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


def _decode(mapping, what):
    out = {}
    for name, value in (mapping or {}).items():
        try:
            out[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise CrdbTlsError("%s %s is not valid base64" % (what, name))
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path"),
            files=dict(type="list", elements="str"),
            planned=dict(type="list", elements="str"),
            certificates=dict(type="dict", default={}),
            keys=dict(type="dict", default={}, no_log=True),
            dest=dict(type="path", required=True),
            owner=dict(type="str"),
            group=dict(type="str"),
            key_owner=dict(type="str", no_log=False),
            key_group=dict(type="str", no_log=False),
            dir_mode=dict(type="raw", default="0700"),
            process_user=dict(type="str"),
            layout=dict(type="str", choices=["standard", "split_node", "split_ca"]),
            expected_hosts=dict(type="list", elements="str", default=[]),
            expected_ui_hosts=dict(type="list", elements="str", default=[]),
            validate=dict(type="bool", default=True),
            purpose=dict(type="str", choices=["node", "client"], default="node"),
            content_checked=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )

    def run(module):
        p = module.params
        if p["src"] and not (p["certificates"] or p["keys"]):
            raise CrdbTlsError("src is read by the crdb.tls.install action plugin on the controller; "
                               "call the module through its action (crdb.tls.install) or pass certificates/keys")
        try:
            dir_mode = int(str(p["dir_mode"]), 8)
        except ValueError:
            raise CrdbTlsError("dir_mode %r is not an octal mode" % (p["dir_mode"],))
        return installer.install(
            p["dest"], _decode(p["certificates"], "certificate"), _decode(p["keys"], "key"),
            owner=p["owner"], group=p["group"], key_owner=p["key_owner"], key_group=p["key_group"],
            dir_mode=dir_mode, process_user=p["process_user"], expected_hosts=p["expected_hosts"],
            expected_ui_hosts=p["expected_ui_hosts"], layout=p["layout"], validate=p["validate"],
            check_mode=module.check_mode, purpose=p["purpose"], content_checked=p["content_checked"])

    module_support.run(module, run, needs_cryptography=False)


if __name__ == "__main__":
    main()
