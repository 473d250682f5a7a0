"""`manage.py check --deploy` is the gate: it names what a deployment is missing.

Each test runs the command as an operator would, in a process of its own with
only the environment given (nothing inherited from the test run), and reads the
check ids it prints and its exit code.
"""

import os
import re
import subprocess
import sys

import pytest

from testkit.server import ROOT

# The README's "Production" set: `check --deploy --fail-level WARNING` passes with it.
PRODUCTION = {
    "SECRET_KEY": "k3y-" + "x7Qp9zLr2Vw8Nt5Bc1Mh6Jd4Fs0Gy3" * 2,
    "ALLOWED_HOSTS": "queenbee.example.com",
    # Not reached: `check` opens no database connection.
    "DATABASE_URL": "postgres://queenbee@db.invalid:5432/queenbee",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    # Several processes need shared file storage (check queenbee.W101).
    "AWS_STORAGE_BUCKET_NAME": "queenbee-files",
    "TRUSTED_PROXIES": "10.0.0.2",
    "PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "METRICS_TOKEN": "a-long-random-token",
}
CHECK_ID = re.compile(r"\(([a-z_.]+\.[EWI]\d+)\)")


def check_deploy(env: dict[str, str], tmp_path) -> tuple[int, set[str], str]:
    """Exit code, check ids and output of `manage.py check --deploy --fail-level WARNING`.

    A generated key goes to `tmp_path`, never into the project folder.
    """
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env={**base, "SECRET_KEY_FILE": str(tmp_path / "secret_key"), **env},
        capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    return result.returncode, set(CHECK_ID.findall(output)), output


def test_the_documented_production_settings_pass(tmp_path):
    code, ids, output = check_deploy(PRODUCTION, tmp_path)
    assert (code, ids) == (0, set()), output
    assert "System check identified no issues" in output


def test_with_nothing_set_it_names_the_generated_key_the_single_process_layer_and_plain_http(tmp_path):
    code, ids, output = check_deploy({}, tmp_path)
    assert code == 1
    assert ids == {
        "queenbee.W001", "queenbee.W002",
        "security.W004", "security.W008", "security.W012", "security.W016",
    }, output
    assert f"generated in {tmp_path / 'secret_key'}" in output
    # DEBUG is off unless asked: Django's security.W018 ("DEBUG set to True") is absent.


def test_with_debug_on_it_names_debug_and_still_runs_every_other_check(tmp_path):
    code, ids, output = check_deploy({**PRODUCTION, "DEBUG": "1", "ALLOWED_HOSTS": "*"}, tmp_path)
    assert code == 1
    assert ids == {"security.W018", "queenbee.W003"}, output


def test_it_names_open_hosts_a_weak_key_plain_http_urls_and_unshared_files(tmp_path):
    env = {
        **{k: v for k, v in PRODUCTION.items() if k != "AWS_STORAGE_BUCKET_NAME"},
        "ALLOWED_HOSTS": "*",
        "SECRET_KEY": "django-insecure-" + "a1b2c3d4e5" * 5,
        "PUBLIC_URL": "http://queenbee.example.com",
        "BILLING_URL": "http://billing.example.com/api",
        "BILLING_SECRET": "billing-secret",
    }
    code, ids, output = check_deploy(env, tmp_path)
    assert code == 1
    assert ids == {"queenbee.W003", "security.W009", "queenbee.W004", "queenbee.W202", "queenbee.W101"}, output
    assert "ALLOWED_HOSTS is '*'" in output and "PUBLIC_URL is plain http" in output


@pytest.mark.parametrize("debug", ["0", "1"])
def test_a_shared_database_without_a_key_is_refused_by_name(tmp_path, debug):
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    code, _, output = check_deploy({**env, "DEBUG": debug}, tmp_path)
    assert code != 0
    assert "Set SECRET_KEY: DATABASE_URL is set" in output
    assert not (tmp_path / "secret_key").exists()
