#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: revoke
short_description: Revoke certificates in a CockroachDB CA's index, for its OCSP responder
version_added: 0.1.0
description:
  - Marks certificates issued by a CA kept by M(crdb.tls.ca) as revoked in the CA's C(index.txt)
    (C(ca.index.txt) or C(ca-client.index.txt) in O(path)), the OpenSSL index format that
    C(openssl ocsp -index) answers from.
  - Selects the certificates by O(serial), or by O(user), every valid certificate whose common name is
    that user (all the client certificates of a SQL user; V(node) selects every certificate with
    CN=node).
  - The revocation date is now; the reason is written after it as C(openssl ca -revoke -crl_reason)
    does (nothing for V(unspecified)).
  - Certificates already revoked are left alone, so a rerun reports no change. Selecting nothing at
    all - an unknown serial or user - is an error naming it.
  - Updates hold the index's lock and replace the file atomically, so they are safe beside concurrent
    issuing runs.
  - An OpenSSL 3 C(openssl ocsp) responder reloads the index when the file changes; older ones must
    be restarted.
  - CockroachDB checks revocation only through OCSP, when the cluster setting C(security.ocsp.mode) is
    V(lax) or V(strict) and the certificates carry an OCSP URL (C(ocsp_url) of
    M(crdb.tls.certificate)). Revoking does not remove the certificate from hosts; issue a
    replacement with M(crdb.tls.certificate) and O(crdb.tls.certificate#module:force=true).
author:
  - crdb.tls contributors (@crdb-tls)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - crdb.tls.controller
attributes:
  check_mode:
    support: full
    details: Reports the certificates that would be revoked; the index is not written.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description:
      - The PKI directory kept by M(crdb.tls.ca).
    type: path
    required: true
  role:
    description:
      - Which CA of O(path) issued the certificates. Client certificates of a split-CA cluster are
        issued by V(client_ca).
    type: str
    choices: [ca, client_ca]
    default: ca
  serial:
    description:
      - Serial number of the certificate to revoke, in hex as RV(crdb.tls.certificate#module:serial)
        returns it (case, colons and a C(0x) prefix do not matter).
      - Exactly one of O(serial) and O(user) is required.
    type: str
  user:
    description:
      - SQL user whose certificates (CN=O(user)) are all revoked.
      - Exactly one of O(serial) and O(user) is required.
    type: str
  reason:
    description:
      - CRL reason recorded with the revocation and returned by the OCSP responder.
    type: str
    choices: [unspecified, keyCompromise, CACompromise, affiliationChanged, superseded,
              cessationOfOperation, certificateHold]
    default: unspecified
seealso:
  - module: crdb.tls.ca
  - module: crdb.tls.certificate
  - module: crdb.tls.ocsp_responder_cert
"""

EXAMPLES = r"""
- name: Revoke every certificate of SQL user alice (her key leaked)
  crdb.tls.revoke:
    path: /srv/crdb-pki
    user: alice
    reason: keyCompromise
  delegate_to: localhost
  run_once: true

- name: Revoke one certificate by serial, issued by the client CA of a split-CA cluster
  crdb.tls.revoke:
    path: /srv/crdb-pki
    role: client_ca
    serial: 5A0F3C1D9E2B7A44C0FFEE0123456789
    reason: superseded
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
revoked:
  description: The certificates this run revoked (would revoke, in check mode); empty when they already were.
  returned: success
  type: list
  elements: dict
  contains:
    serial:
      description: Serial number, upper-case hex.
      type: str
      sample: 5A0F3C1D9E2B7A44C0FFEE0123456789
    subject:
      description: Subject as the index holds it.
      type: str
      sample: /O=Cockroach/CN=alice
    common_name:
      description: Common name of the subject.
      type: str
      sample: alice
    not_after:
      description: Expiry of the certificate (ISO 8601, UTC).
      type: str
    revoked_on:
      description: Revocation date written (ISO 8601, UTC).
      type: str
    reason:
      description: Revocation reason.
      type: str
      sample: keyCompromise
already_revoked:
  description: Serials selected that were revoked before this run.
  returned: success
  type: list
  elements: str
reasons:
  description: Why the module changed something (empty when nothing changed).
  returned: always
  type: list
  elements: str
  sample: ["serial 5A0F3C1D9E2B7A44C0FFEE0123456789 (/O=Cockroach/CN=alice) revoked: keyCompromise"]
index:
  description: Path of the CA's index file.
  returned: success
  type: str
  sample: /srv/crdb-pki/ca.index.txt
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import authority, ledger, module_support, rules


ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    role=dict(type="str", choices=["ca", "client_ca"], default="ca"),
    serial=dict(type="str"),
    user=dict(type="str"),
    reason=dict(type="str", choices=list(ledger.REVOCATION_REASONS), default="unspecified"),
)
NEEDS_CRYPTOGRAPHY = False
SPEC_OPTIONS = dict(
    mutually_exclusive=[("serial", "user")],
    required_one_of=[("serial", "user")],
)


def run(module):
    p = module.params
    index = authority.paths(p["path"], p["role"])["index"]
    user = rules.validate_username(p["user"]) if p["user"] is not None else None
    serial = ledger.canonical_serial(p["serial"]) if p["serial"] is not None else None
    changed = ledger.revoke(index, serial=serial, subject_cn=user, reason=p["reason"],
                            check_mode=module.check_mode)
    changed_serials = set(row["serial"] for row in changed)
    already = [row["serial"] for row in ledger.status(index)
               if row["status"] == "revoked" and row["serial"] not in changed_serials
               and (row["common_name"] == user if user is not None
                    else row["serial"].upper() == serial)]
    return {
        "changed": bool(changed),
        "revoked": changed,
        "already_revoked": already,
        "reasons": ["serial %s (%s) revoked: %s" % (row["serial"], row["subject"], row["reason"])
                    for row in changed],
        "index": index,
    }


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **SPEC_OPTIONS)
    module_support.run(module, run, needs_cryptography=NEEDS_CRYPTOGRAPHY)


if __name__ == "__main__":
    main()
