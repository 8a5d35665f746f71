#!/bin/sh
# What must not change when a broken certificate set is refused: the certs
# dir's names, owners, modes, sizes, inodes, mtimes and contents; the number
# of "hangup" lines in the stand-in's log; its reload counters and the cert
# its DB Console serves. Run on a node by side_effect.yml (before the broken
# runs) and by tests/test_reload.py (after them).
set -eu
cd /var/lib/cockroach/certs
stat -c '%n %U %G %a' .
stat -c '%n %U %G %a %s %i %Y' -- * .[!.]* 2>/dev/null | sort || true
sha256sum -- * | sort
echo "hangups=$(grep -c 'received signal "hangup"' /var/log/cockroach-standin.log)"
python3 -c '
import json, ssl, urllib.request
ctx = ssl.create_default_context(cafile="/var/lib/cockroach/certs/ca.crt")
s = json.load(urllib.request.urlopen("https://127.0.0.1:8080/", context=ctx, timeout=10))
print("reloads=%s failures=%s served=%s" % (s["reloads"], s["reload_failures"], s["served_cert_sha256"]))'
