# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_in_process: a controller-only module run in its action keeps AnsibleModule's contract."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import types

from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError
from ansible_collections.crdb.tls.plugins.modules import ca as ca_module
from ansible_collections.crdb.tls.plugins.plugin_utils.controller_module import run_in_process


def _module_code(run, **spec_options):
    return types.SimpleNamespace(
        ARGUMENT_SPEC=dict(
            path=dict(type="path", required=True),
            secret=dict(type="str", no_log=True),
            mode=dict(type="str", choices=["a", "b"], default="a"),
            other=dict(type="str"),
        ),
        SPEC_OPTIONS=spec_options,
        run=run,
    )


def test_params_are_validated_with_defaults_and_path_expansion(monkeypatch):
    monkeypatch.setenv("HOME", "/home/op")
    seen = {}

    def run(module):
        seen.update(module.params, check=module.check_mode, diff=module._diff)
        return {"changed": True}

    result = run_in_process(_module_code(run), "x.y.z", {"path": "~/pki"}, check_mode=True, diff=True)
    assert result["changed"] is True
    assert "failed" not in result
    assert seen == {"path": "/home/op/pki", "secret": None, "mode": "a", "other": None, "check": True, "diff": True}


def test_unsupported_parameter_names_the_module_and_the_parameter():
    result = run_in_process(_module_code(lambda m: {}), "crdb.tls.ca", {"path": "/p", "bogus": 1})
    assert result["failed"] is True
    assert result["msg"].startswith("Unsupported parameters for (crdb.tls.ca) module: bogus.")


def test_choices_and_mutually_exclusive_messages_are_ansiblemodules():
    code = _module_code(lambda m: {}, mutually_exclusive=[["secret", "other"]])
    bad_choice = run_in_process(code, "x.y.z", {"path": "/p", "mode": "c"})
    assert bad_choice["msg"] == "value of mode must be one of: a, b, got: c"
    exclusive = run_in_process(code, "x.y.z", {"path": "/p", "secret": "s3cret-value", "other": "o"})
    assert exclusive["msg"] == "parameters are mutually exclusive: secret|other"
    assert "s3cret-value" not in json.dumps(exclusive)


def test_no_log_values_are_masked_everywhere_in_the_result():
    def run(module):
        return {"changed": False, "echo": "the secret was %s" % module.params["secret"],
                "nested": [{"value": module.params["secret"]}]}

    result = run_in_process(_module_code(run), "x.y.z", {"path": "/p", "secret": "hunter2-long-secret"})
    text = json.dumps(result)
    assert "hunter2-long-secret" not in text
    assert result["invocation"]["module_args"]["secret"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert result["invocation"]["module_args"]["path"] == "/p"


def test_crdb_tls_error_and_fail_json_become_failures_with_their_message():
    def raises(module):
        raise CrdbTlsError("the CA %s is expired" % module.params["path"])

    def fails(module):
        module.fail_json(msg="cert_src and key_src go together", hint="x")

    failed = run_in_process(_module_code(raises), "x.y.z", {"path": "/pki"})
    assert failed["failed"] is True and failed["msg"] == "the CA /pki is expired"
    assert failed["changed"] is False
    failed = run_in_process(_module_code(fails), "x.y.z", {"path": "/pki"})
    assert failed["msg"] == "cert_src and key_src go together" and failed["hint"] == "x"


def test_warnings_are_returned():
    def run(module):
        module.warn("the CA expires in 3 days")
        return {"changed": False}

    assert run_in_process(_module_code(run), "x.y.z", {"path": "/p"})["warnings"] == ["the CA expires in 3 days"]


def test_the_real_ca_module_runs_and_keeps_its_key_out_of_the_result(tmp_path):
    pki = tmp_path / "pki"
    args = {"path": str(pki), "passphrase": "correct horse battery staple", "key_type": "ecdsa"}
    first = run_in_process(ca_module, "crdb.tls.ca", args, diff=True)
    assert first["changed"] is True, first
    assert (pki / "ca.key").stat().st_mode & 0o077 == 0
    key_pem = (pki / "ca.key").read_text()
    text = json.dumps(first)
    assert "correct horse battery staple" not in text
    assert key_pem.splitlines()[1] not in text
    assert "diff" in first
    second = run_in_process(ca_module, "crdb.tls.ca", args)
    assert second["changed"] is False and "diff" not in second
    refused = run_in_process(ca_module, "crdb.tls.ca", dict(args, cert_src=str(pki / "ca.crt")))
    assert refused["failed"] is True
    assert refused["msg"].startswith("cert_src and key_src go together")
