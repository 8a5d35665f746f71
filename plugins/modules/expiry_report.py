#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: expiry_report
short_description: Gather a fleet's certificate expiry rows into one table and one JSON file
version_added: 0.1.0
description:
  - Takes the rows M(crdb.tls.expiry_check) returned on every host (and the hosts where it could not run)
    and returns them as a table, the problems (host, file and why) and a summary; optionally writes them as a
    JSON document, atomically, on the host the module runs on (the controller, with C(delegate_to=localhost)).
  - Never fails because of what it reports; the playbook decides (C(playbooks/check.yml) fails the run when
    O(rows) hold anything not ok, so that cron or CI see a non-zero exit).
author:
  - crdb.tls contributors (@crdb-tls)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The JSON file is not written.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  rows:
    description:
      - The C(certificates) of M(crdb.tls.expiry_check), from every host.
    type: list
    elements: dict
    default: []
  failed_hosts:
    description:
      - Host name to the message of a host whose check failed or that was unreachable; each becomes a broken row.
    type: dict
    default: {}
  json_path:
    description:
      - Write the report here as JSON (C(generated_at), C(ok), C(summary), C(problems), C(certificates)).
    type: path
seealso:
  - module: crdb.tls.expiry_check
"""

EXAMPLES = r"""
- name: One report for the whole fleet, on the controller
  crdb.tls.expiry_report:
    rows: "{{ ansible_play_hosts | map('extract', hostvars, ['expiry', 'certificates']) | flatten }}"
    json_path: /var/tmp/crdb-tls-expiry.json
  delegate_to: localhost
  run_once: true
  register: report
"""

RETURN = r"""
table:
  description: The rows as a fixed-width table (host, file, kind, expires, days left, window, status, why).
  returned: success
  type: str
problems:
  description: C(host file - why (status)) for every row that is not ok.
  returned: success
  type: list
  elements: str
summary:
  description: How many rows have each status (ok, due, expired, broken).
  returned: success
  type: dict
ok:
  description: True when every row is ok.
  returned: success
  type: bool
json_path:
  description: Where the JSON report was written.
  returned: when O(json_path) is set
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import module_support, renewal


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rows=dict(type="list", elements="dict", default=[]),
            failed_hosts=dict(type="dict", default={}),
            json_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )

    def run(module):
        p = module.params
        rows = list(p["rows"]) + [renewal.failed_host_row(h, m) for h, m in sorted(p["failed_hosts"].items())]
        document = renewal.report(rows)
        result = {
            "changed": False,
            "table": renewal.format_table(rows),
            "problems": document["problems"],
            "summary": document["summary"],
            "ok": document["ok"],
        }
        if p["json_path"]:
            result["changed"] = renewal.write_report(p["json_path"], document, module.check_mode)
            result["json_path"] = p["json_path"]
        return result

    module_support.run(module, run, needs_cryptography=False)


if __name__ == "__main__":
    main()
