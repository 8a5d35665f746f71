# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The identity options every module that judges or issues certificates shares (see verifier.identity_options)."""

    DOCUMENTATION = r"""
options:
  identity:
    description:
      - How the cluster maps certificates to users, as given to C(cockroach start). The same dict for
        M(crdb.tls.certs_info), M(crdb.tls.install), M(crdb.tls.issue_fleet), M(crdb.tls.node_key) and
        M(crdb.tls.expiry_check). When omitted, CockroachDB's defaults apply (principal C(node) for node-to-node
        traffic, C(<user>) for C(client.<user>.crt)).
    type: dict
    suboptions:
      principal_map:
        description:
          - C(--cert-principal-map) as a dict, certificate principal (its CN or a DNS SAN) to database user,
            for example C(n1.corp.example) to C(node).
        type: dict
        default: {}
      node_cert_dn:
        description:
          - C(--node-cert-distinguished-name) (CockroachDB v24.1 and later). When set (or O(identity.root_cert_dn)),
            node-to-node RPC needs a client certificate whose subject DN equals one of them exactly, instead of
            principal C(node) or C(root). Its attributes are compared in the order they are encoded in the
            certificate (CockroachDB does not reverse them, as RFC 4514 strings usually are), for example
            C(O=Corp,OU=DB,CN=n1.corp.example) for a subject made as C(/O=Corp/OU=DB/CN=n1.corp.example).
        type: str
      root_cert_dn:
        description:
          - The exact subject DN of the root user's certificates (C(--root-cert-distinguished-name)).
        type: str
      tenant_scope:
        description:
          - Client certificates carry tenant-scoped URI SANs C(crdb://tenant/<id>/user/<name>) (CockroachDB then
            authenticates by those only). When true, a client certificate without one is reported (a warning).
        type: bool
        default: false
"""
