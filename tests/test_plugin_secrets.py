"""The pytest plugin in a user's project: failure reports without passwords, and a dead
PROTON_EASY_TEST_URL reported once, before any test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from proton_easy.testing.plugin import SecretURL

USER_TESTS = '''
import proton_easy as pe

def test_fails_on_purpose(amqp_url, amqp_address):
    pe.send(f"{amqp_url}/{amqp_address}", "hi")
    assert amqp_url == "something else"

def test_also_uses_the_broker(amqp_url):
    assert amqp_url.startswith("amqp://")
'''


def user_pytest(tmp_path: Path, test_url: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "PROTON_EASY_URL"}
    env["PROTON_EASY_TEST_URL"] = test_url
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-l", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def test_failure_reports_hide_the_password(amqp_url: str, tmp_path: Path) -> None:
    password = amqp_url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert len(password) >= 6  # the session broker's random password
    proc = user_pytest(tmp_path, amqp_url)
    out = proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in out, out
    assert "amqp_url" in out and ":***@" in out  # shown with -l, redacted
    assert password not in out


def test_a_dead_test_url_fails_once_up_front(tmp_path: Path) -> None:
    proc = user_pytest(tmp_path, "amqp://admin:Dead-Pw-42@127.0.0.1:1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out  # pytest's usage error: nothing ran
    assert out.count("PROTON_EASY_TEST_URL=amqp://admin:***@127.0.0.1:1") == 1, out
    assert "is a broker running at 127.0.0.1:1?" in out
    assert "passed" not in out and "Dead-Pw-42" not in out


def test_secret_url_is_the_whole_url_except_in_its_repr() -> None:
    url = SecretURL("amqp://admin:s3cret-Pw@127.0.0.1:5672")
    assert repr(url) == "'amqp://admin:***@127.0.0.1:5672'"
    assert f"{url}/q" == "amqp://admin:s3cret-Pw@127.0.0.1:5672/q"
    assert url + "/q" == "amqp://admin:s3cret-Pw@127.0.0.1:5672/q"
    assert str(url) == "amqp://admin:s3cret-Pw@127.0.0.1:5672"
