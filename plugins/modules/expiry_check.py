#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: expiry_check
short_description: Check a host's CockroachDB certificates against their renewal windows
version_added: 0.1.0
description:
  - Reads every certs dir in O(dirs) the way a CockroachDB node or client does (the checks of
    M(crdb.tls.certs_info)) and judges each certificate against the renewal window of its kind (CA, node,
    client, ui). One row per certificate - host, file, kind, expiry, days left, window, status and why.
  - Status V(ok), V(due) (inside its renewal window), V(expired) or V(broken) (a problem CockroachDB would
    trip over).
  - With O(pki_dir) (on the controller), also the signing CAs kept there. A CA inside its window is reported
    as due and warned about; renewing leaves never replaces a CA (that is C(playbooks/rotate_ca.yml)).
  - With O(served_address), and when a process named O(process_name) runs, checks that it serves
    O(served_cert) there (after a reload).
  - With O(textfile_dir), writes the rows atomically as a Prometheus textfile for node_exporter's textfile
    collector (metrics C(crdb_tls_cert_expiry_timestamp_seconds), C(crdb_tls_cert_days_left),
    C(crdb_tls_cert_problems), labels C(host), C(file) and C(kind)). Nothing else is ever written.
author:
  - crdb.tls contributors (@crdb-tls)
requirements:
  - Python 3 and cryptography 3.4.8 or later on the host the module runs on (tested at 3.4.8, RHEL 9's), from the
    package C(python3-cryptography) on Debian, Ubuntu and RHEL, or C(pip install cryptography). Without it the
    module fails with a message naming that package, unless O(require_cryptography=false).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - crdb.tls.identity
attributes:
  check_mode:
    support: full
    details: Reports whether the textfile would change without writing it.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  host:
    description:
      - Host name put in every row and metric label (usually C(inventory_hostname)).
    type: str
    required: true
  dirs:
    description:
      - Certs dirs to check.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The certs dir (C(~user) is expanded on the host).
        type: str
        required: true
      purpose:
        description: V(node) for a node's certs dir, V(client) for a SQL client's.
        type: str
        choices: [node, client]
        default: node
      layout:
        description: Require the files of this layout.
        type: str
        choices: [standard, split_node, split_ca]
      process_user:
        description: User the process reading the dir runs as (key permission rule). Defaults to the dir's owner.
        type: str
      expected_hosts:
        description: Names that must be in the SANs of C(node.crt).
        type: list
        elements: str
      shown_as:
        description:
          - Name the files in the rows under this dir instead of O(dirs[].path) - for an issued dir on the
            controller whose files a host holds byte for byte (proven by M(crdb.tls.install) in check mode), judged
            here for a host without cryptography.
        type: str
  pki_dir:
    description:
      - A PKI directory of M(crdb.tls.ca) whose signing CAs (C(ca.signer.pem), C(ca-client.signer.pem)) are
        checked too. Only on the controller.
    type: path
  renew_before:
    description:
      - Renewal window per kind - keys V(ca), V(node), V(client), V(ui); values durations such as V(30d), or
        shares of each certificate's own lifetime such as V(33%) (the last third of its validity period).
        A kind left out takes its default (ca V(180d), the others V(33%)).
    type: dict
    default: {}
  renew_as_of:
    description:
      - Judge renewal windows as of this instant (ISO 8601 with a UTC offset) instead of now; expiry is still
        judged now, and an instant later than this host's clock counts as now.
      - For the check that closes a renewal run - pass the issue step's
        RV(crdb.tls.issue_fleet#module:evaluated_at), so a certificate that entered its window after the issue
        step judged it (and is renewed by the next run) is not reported as one the run failed to renew.
    type: str
  served_address:
    description:
      - C(host:port) where the running process serves O(served_cert) (the DB Console address).
    type: str
  served_cert:
    description:
      - The certificate that must be served at O(served_address). Required with O(served_address).
    type: path
  process_name:
    description:
      - Exact name of the process whose served certificate is checked; without one running, the served
        certificate is not checked.
    type: str
    default: cockroach
  served_timeout:
    description:
      - Seconds to wait for O(served_address) to serve O(served_cert).
    type: int
    default: 10
  textfile_dir:
    description:
      - Directory of node_exporter's textfile collector (C(--collector.textfile.directory)); the rows are
        written there as O(textfile_name), atomically.
    type: path
  textfile_name:
    description:
      - File name in O(textfile_dir); it must end in C(.prom).
    type: str
    default: crdb_tls.prom
  require_cryptography:
    description:
      - With V(false), on a host without the cryptography library, only the served certificate
        (O(served_address)) is checked; the module returns RV(cryptography=false) instead of failing, and the
        caller checks the certs dir another way (the node role checks the set it installed on the controller,
        and compares the host's files with it).
    type: bool
    default: true
  fail_on_problems:
    description:
      - Fail when a certificate is broken, expired or a node, client or ui certificate is inside its window.
        A CA inside its window only warns, since renewal cannot fix it.
    type: bool
    default: false
seealso:
  - module: crdb.tls.certs_info
  - module: crdb.tls.expiry_report
"""

EXAMPLES = r"""
- name: Check this node's certificates, and export them to node_exporter
  crdb.tls.expiry_check:
    host: "{{ inventory_hostname }}"
    dirs:
      - path: /var/lib/cockroach/certs
        layout: standard
        process_user: cockroach
    renew_before: {ca: 180d, node: 30d, client: 30d, ui: 30d}
    textfile_dir: /var/lib/node_exporter/textfile_collector
  become: true
  register: expiry

- name: After a reload, fail unless the new certificate is served and nothing is due
  crdb.tls.expiry_check:
    host: "{{ inventory_hostname }}"
    dirs: [{path: /var/lib/cockroach/certs}]
    served_address: 127.0.0.1:8080
    served_cert: /var/lib/cockroach/certs/node.crt
    fail_on_problems: true
  become: true
"""

RETURN = r"""
cryptography:
  description: Whether the host has the cryptography library; V(false) (only with O(require_cryptography=false))
    means only the served certificate was checked.
  returned: success
  type: bool
certificates:
  description: One row per certificate file (and per problem not tied to one).
  returned: success
  type: list
  elements: dict
  contains:
    host:
      description: O(host).
      type: str
    file:
      description: Path of the certificate file on the host.
      type: str
    kind:
      description: Renewal kind - ca, node, client or ui.
      type: str
    not_after:
      description: Expiry, ISO 8601 UTC.
      type: str
    expiry_timestamp:
      description: Expiry, Unix time.
      type: int
    days_left:
      description: Whole days until expiry.
      type: int
    seconds_left:
      description: Seconds until expiry (negative once expired), for certificates that live hours.
      type: int
    left:
      description: Time until expiry at a glance (V(1829d), V(9h), V(40m)).
      type: str
    window:
      description: The kind's renewal window as given, with its length for this certificate when it is a share
        of the lifetime, for example 33% (8h) or 30d.
      type: str
    window_days:
      description: Length of the renewal window for this certificate, in whole days.
      type: int
    window_seconds:
      description: Length of the renewal window for this certificate, in seconds.
      type: int
    status:
      description: ok, due, expired or broken.
      type: str
    why:
      description: The problems and the window, in words.
      type: list
      elements: str
  sample:
    - host: node1
      file: /var/lib/cockroach/certs/node.crt
      kind: node
      not_after: "2031-12-03T18:44:00+00:00"
      days_left: 1830
      seconds_left: 158112000
      left: 1830d
      window: "33% (610d)"
      window_days: 610
      window_seconds: 52704000
      status: ok
      why: []
problems:
  description: C(host file - why (status)) for every row that is not ok.
  returned: success
  type: list
  elements: str
ca_due:
  description: The CA rows inside their window.
  returned: success
  type: list
  elements: str
served:
  description: What the served-certificate check found.
  returned: when O(served_address) is set
  type: str
textfile:
  description: Path of the Prometheus textfile.
  returned: when O(textfile_dir) is set
  type: str
ok:
  description: True when every row is ok.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import durations, module_support, pki, renewal, verifier


def _in(row):
    """``36 days``, or ``9h`` for a CA that lives less than two days."""
    return "%d days" % row["days_left"] if row["seconds_left"] >= 2 * 86400 else row["left"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            dirs=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                purpose=dict(type="str", choices=["node", "client"], default="node"),
                layout=dict(type="str", choices=["standard", "split_node", "split_ca"]),
                process_user=dict(type="str"),
                expected_hosts=dict(type="list", elements="str"),
                shown_as=dict(type="str"),
            )),
            pki_dir=dict(type="path"),
            renew_before=dict(type="dict", default={}),
            renew_as_of=dict(type="str"),
            served_address=dict(type="str"),
            served_cert=dict(type="path"),
            process_name=dict(type="str", default="cockroach"),
            served_timeout=dict(type="int", default=10),
            textfile_dir=dict(type="path"),
            textfile_name=dict(type="str", default=renewal.TEXTFILE_NAME),
            require_cryptography=dict(type="bool", default=True),
            fail_on_problems=dict(type="bool", default=False),
            identity=verifier.IDENTITY_OPTION_SPEC,
        ),
        required_by={"served_address": ["served_cert"]},
        supports_check_mode=True,
    )

    def run(module):
        p = module.params
        windows = renewal.windows(None, dict(renewal.DEFAULT_WINDOWS, **p["renew_before"]))
        now = pki.utcnow()
        as_of = durations.parse_instant(p["renew_as_of"], "renew_as_of") if p["renew_as_of"] else None
        rows = []
        # Without cryptography (require_cryptography=false): the served certificate only.
        for entry in p["dirs"] if pki.HAS_CRYPTOGRAPHY else []:
            dir_rows = renewal.assess_dir(p["host"], entry["path"], windows, purpose=entry["purpose"],
                                          layout=entry["layout"], process_user=entry["process_user"],
                                          expected_hosts=entry["expected_hosts"], now=now,
                                          identity=p["identity"], window_now=as_of)
            rows.extend(renewal.shown_as(dir_rows, entry["path"], entry["shown_as"]) if entry["shown_as"] else dir_rows)
        if p["pki_dir"] and pki.HAS_CRYPTOGRAPHY:
            rows.extend(renewal.assess_pki(p["host"], p["pki_dir"], windows, now=now, window_now=as_of))
        result = {"changed": False, "cryptography": pki.HAS_CRYPTOGRAPHY}
        if p["served_address"]:
            row, result["served"] = renewal.served_check(p["host"], p["served_address"], p["served_cert"],
                                                         p["process_name"], p["served_timeout"])
            if row is not None:
                rows.append(row)
        ca_due = [r for r in rows if r["kind"] == "ca" and r["status"] == renewal.STATUS_DUE]
        for row in ca_due:
            module.warn("%s: the CA %s expires on %s, in %s, inside its %s renewal window; %s"
                        % (row["host"], row["file"], row["not_after"], _in(row), row["window"],
                           renewal.ROTATE_HINT))
        if p["textfile_dir"]:
            result["changed"], result["textfile"] = renewal.write_textfile(
                p["textfile_dir"], rows, p["textfile_name"], module.check_mode)
        result.update({
            "certificates": rows,
            "problems": renewal.problems_of(rows),
            "ca_due": renewal.problems_of(ca_due),
            "ok": not renewal.problems_of(rows),
        })
        failing = renewal.problems_of([r for r in rows if r not in ca_due])
        if p["fail_on_problems"] and failing:
            module.fail_json(msg="%d certificate problem(s) on %s: %s" % (len(failing), p["host"], "; ".join(failing)),
                             **result)
        return result

    module_support.run(module, run, needs_cryptography=module.params["require_cryptography"])


if __name__ == "__main__":
    main()
