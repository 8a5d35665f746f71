# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ARGV RECORDER, a test double. It is NOT CockroachDB and runs no SQL.

The integration target node_ocsp_mode_argv_recorder runs it through a small
`cockroach` wrapper placed where the node role looks for the cockroach
binary (crdb_tls_cockroach_bin). Each call
appends its argument vector, as one JSON line, to argv.jsonl beside it. When
the arguments contain a SHOW statement, it prints a CSV answer whose value is
the content of current_mode beside it (what a cluster would hold), so that
the role's read-then-set logic can be tested; it prints nothing otherwise.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "argv.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")

if any(arg.startswith("SHOW ") for arg in sys.argv[1:]):
    with open(os.path.join(HERE, "current_mode")) as handle:
        sys.stdout.write("security.ocsp.mode\n%s\n" % handle.read().strip())
