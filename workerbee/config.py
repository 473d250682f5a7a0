"""Settings of one worker process: CLI flags, then `WORKERBEE_*` environment variables,
then the JSON config file, then defaults (first found wins).

The config file also keeps the worker's identity key (`privkey`, urlsafe base64 of
32 random bytes, as the original's `~/.config/gputopia`). It is created on first
run, readable by its owner only, so the worker keeps its identity (and its stats
and earnings on the coordinator) across restarts.
"""

import argparse
import base64
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "WORKERBEE_"


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "workerbee" / "config.json"


def default_models_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "workerbee" / "models"


@dataclass(frozen=True)
class Config:
    queen_url: str = "ws://127.0.0.1:8000/worker"
    ln_address: str = "DONT_PAY_ME"
    auth_key: str = ""
    models_dir: str = ""  # "" means default_models_dir()
    hf_cache: str = ""  # "" means HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub
    packaged_model: bool = True
    ctx_size: int = 4096
    threads: int = 0  # 0 lets llama.cpp choose
    gpu_layers: int = -2  # -2: all layers when llama.cpp can offload, else none; -1: all; n: n
    main_gpu: int = 0
    tensor_split: str = ""  # comma-separated proportions, as llama.cpp takes them
    backoff_base: float = 1.0  # first reconnect delay, seconds
    backoff_max: float = 60.0  # reconnect delays grow up to this
    log_level: str = "INFO"
    config: str = ""  # path of the JSON config file; "" means default_config_path()
    privkey: str = dataclasses.field(default="", repr=False)

    @property
    def config_path(self) -> Path:
        return Path(self.config).expanduser() if self.config else default_config_path()

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir).expanduser() if self.models_dir else default_models_dir()

    @property
    def privkey_bytes(self) -> bytes:
        return base64.urlsafe_b64decode(self.privkey)


HELP = {
    "queen_url": "websocket URL of the coordinator, e.g. wss://queenbee.example/worker",
    "ln_address": "Lightning address that gets paid for this worker's jobs",
    "auth_key": "your Queenbee API key, to link this worker to your account (sent to the coordinator)",
    "models_dir": "folder of models laid out as OWNER/REPO/FILE.gguf (default ~/.cache/workerbee/models)",
    "hf_cache": "Hugging Face hub cache folder to take models from (default: HF_HUB_CACHE or ~/.cache/huggingface/hub)",
    "packaged_model": "offer the packaged Gemma 3 270M model when its pip package is installed (true/false)",
    "ctx_size": "context length in tokens for loaded models",
    "threads": "CPU threads for inference (0: llama.cpp's default)",
    "gpu_layers": "layers to offload to the GPU (-1: all; default: all when llama.cpp was built with GPU support)",
    "main_gpu": "GPU to use first (several workers on one machine: also sets the slug)",
    "tensor_split": "comma-separated proportions to split a model across GPUs (also sets the slug)",
    "backoff_base": "first reconnect delay in seconds; it doubles on each failure",
    "backoff_max": "longest reconnect delay in seconds",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "config": "JSON config file holding the identity key and any of these options (default ~/.config/workerbee/config.json)",
}


def _convert(name: str, value: Any) -> Any:
    kind = type(getattr(Config(), name))
    if isinstance(value, str):
        value = value.strip()
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"{name} must be true or false, not {value!r}")
            return value.lower() in ("1", "true", "yes", "on")
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return kind(value)


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m workerbee",
        description="Queenbee reference worker: serves GGUF models with llama.cpp over the workerbee protocol.",
        epilog=f"Every option can also be set as {ENV_PREFIX}<NAME> (e.g. {ENV_PREFIX}QUEEN_URL) or as a key of the config file.",
    )
    for name, text in HELP.items():
        dashed = name.replace("_", "-")
        flags = [f"--{dashed}"] + ([f"--{name}"] if dashed != name else [])  # the original's spelling too
        flags += ["--ln-url", "--ln_url"] if name == "ln_address" else []  # the original's alias
        default = getattr(Config(), name)
        shown = f" (default {default})" if default not in ("", None) and "default" not in text else ""
        parser.add_argument(*flags, dest=name, help=text + shown, default=argparse.SUPPRESS)
    return vars(parser.parse_args(argv))


def new_privkey() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's settings, creating the file (with a new key) when missing."""
    data: dict[str, Any] = {}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object")
    if not data.get("privkey"):
        data["privkey"] = new_privkey()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=4)
    return data


def load_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the Config from CLI flags, the environment and the config file."""
    environ = os.environ if environ is None else environ
    cli = parse_args(argv)
    env = {name: environ[ENV_PREFIX + name.upper()] for name in HELP if ENV_PREFIX + name.upper() in environ}
    config_path = cli.get("config") or env.get("config") or ""
    path = Path(config_path).expanduser() if config_path else default_config_path()
    known = {f.name for f in dataclasses.fields(Config)}
    from_file = {k: v for k, v in read_config_file(path).items() if k in known}
    merged = {**from_file, **env, **cli, "config": str(path)}
    values = {}
    for name, value in merged.items():
        try:
            values[name] = _convert(name, value)
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"workerbee: bad setting {name}: {exc}") from None
    config = Config(**values)
    if not config.queen_url.startswith(("ws://", "wss://")):
        raise SystemExit(f"workerbee: queen_url must start with ws:// or wss://, not {config.queen_url!r}")
    try:
        valid = len(config.privkey_bytes) == 32
    except ValueError:
        valid = False
    if not valid:
        raise SystemExit(f"workerbee: privkey in {path} must be urlsafe base64 of 32 bytes")
    return config
