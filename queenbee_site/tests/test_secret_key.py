"""The embedded default generates its secret key on first run and keeps it; SECRET_KEY wins."""

import os
import stat
import subprocess
import sys
import time

from queenbee_site import secret_key
from testkit.server import ROOT


def test_it_generates_a_private_key_on_first_run_and_reuses_it(tmp_path):
    path = tmp_path / "data" / "secret_key"
    key = secret_key.read_or_create(path)
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key.read_or_create(path) == key
    assert os.listdir(path.parent) == ["secret_key"]  # no temporary file left behind


def test_a_process_that_loses_the_race_uses_the_winners_key(tmp_path, monkeypatch):
    """Another process writes the key between this one's look and its own write."""
    path = tmp_path / "secret_key"
    generate = secret_key.secrets.token_urlsafe

    def winner_first(n: int) -> str:
        path.write_text("the-winners-key\n")
        return generate(n)

    monkeypatch.setattr(secret_key.secrets, "token_urlsafe", winner_first)
    assert secret_key.read_or_create(path) == "the-winners-key"
    assert path.read_text() == "the-winners-key\n"
    assert os.listdir(tmp_path) == ["secret_key"]


RACER = """
import os, sys, time
from pathlib import Path
from queenbee_site.secret_key import read_or_create
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
print(read_or_create(Path(sys.argv[2])))
"""


def test_concurrent_first_starts_end_with_one_key(tmp_path):
    go, path = tmp_path / "go", tmp_path / "secret_key"
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(go), str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    time.sleep(0.5)  # every racer is waiting for the start
    go.touch()
    keys = {racer.communicate(timeout=30)[0].strip() for racer in racers}
    assert keys == {path.read_text().strip()}


def settings_key(env: dict[str, str]) -> str:
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_embedded_default_keeps_its_key_in_the_data_folder_and_secret_key_wins(tmp_path):
    path = tmp_path / "secret_key"
    generated = settings_key({"SECRET_KEY_FILE": str(path)})
    assert generated == path.read_text().strip()
    assert settings_key({"SECRET_KEY_FILE": str(path), "SECRET_KEY": "an-operators-own-key"}) == "an-operators-own-key"
