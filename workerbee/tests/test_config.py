"""Settings come from flags, then WORKERBEE_* variables, then the config file, then defaults."""

import json

import pytest

from workerbee.config import Config, load_config


def test_flags_beat_the_environment_which_beats_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ln_address": "file@x", "auth_key": "from-file", "ctx_size": 1024, "queen_url": "ws://file/worker"}))
    env = {"WORKERBEE_CONFIG": str(path), "WORKERBEE_AUTH_KEY": "from-env", "WORKERBEE_QUEEN_URL": "ws://env/worker", "WORKERBEE_PACKAGED_MODEL": "no"}
    config = load_config(["--queen-url", "ws://cli/worker"], env)
    assert config.queen_url == "ws://cli/worker"
    assert config.auth_key == "from-env"
    assert config.ln_address == "file@x"
    assert config.ctx_size == 1024
    assert config.packaged_model is False
    assert config.backoff_max == Config().backoff_max


def test_it_accepts_the_original_workers_flag_spelling(tmp_path):
    config = load_config(["--queen_url", "ws://q/worker", "--ln_address", "me@x", "--config", str(tmp_path / "c.json")], {})
    assert (config.queen_url, config.ln_address) == ("ws://q/worker", "me@x")


def test_it_creates_a_private_config_file_with_a_new_key(tmp_path):
    path = tmp_path / "deep" / "config.json"
    config = load_config(["--config", str(path)], {})
    saved = json.loads(path.read_text())
    assert saved == {"privkey": config.privkey}
    assert len(config.privkey_bytes) == 32
    assert path.stat().st_mode & 0o777 == 0o600


def test_it_adds_a_key_to_an_existing_file_and_keeps_its_settings(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ln_address": "me@x"}))
    config = load_config(["--config", str(path)], {})
    assert json.loads(path.read_text()) == {"ln_address": "me@x", "privkey": config.privkey}


@pytest.mark.parametrize("argv", [["--packaged-model", "maybe"], ["--ctx-size", "lots"]])
def test_bad_values_stop_with_a_message(tmp_path, argv):
    with pytest.raises(SystemExit, match="bad setting"):
        load_config([*argv, "--config", str(tmp_path / "c.json")], {})


def test_a_broken_key_stops_with_a_message(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"privkey": "c2hvcnQ="}))
    with pytest.raises(SystemExit, match="privkey"):
        load_config(["--config", str(path)], {})


def test_the_queen_url_must_be_a_websocket_url(tmp_path):
    with pytest.raises(SystemExit, match="ws:// or wss://"):
        load_config(["--queen-url", "http://localhost:8000/worker", "--config", str(tmp_path / "c.json")], {})
