# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ansible-test's get-pip bootstrap script.

ansible-test creates its sanity virtual environments without pip and then
runs a get-pip.py it downloads from ci-files.testing.ansible.com, which CI
cannot reach. `make sanity` copies this file to the cache path ansible-test
checks first (~/.ansible/test/cache/get_pip_<version>.py), unless a real
get-pip.py is already there.

Like get-pip.py it takes `pip install` arguments plus the get-pip options
--no-setuptools and --no-wheel. It installs the pip bundled with Python
(ensurepip, offline), then runs `pip install` with the given arguments
(e.g. pip==24.2) from the package index.
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")


def main() -> int:
    """Bootstrap pip into the running interpreter's environment."""
    # ensurepip empties PIP_* and points PIP_CONFIG_FILE at /dev/null in this
    # process; the second pip run needs the machine's pip configuration
    # (index, certificates) back.
    environ = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    if not args:
        return 0
    return subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=environ)


if __name__ == "__main__":
    sys.exit(main())
