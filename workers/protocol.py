"""The original worker's wire protocol: every close code, every frame Queenbee
sends to a worker, and the decoding of what workers send (the connect message).

Pure: no Django. Everything a worker sends is hostile until parsed here; a
problem raises ProtocolError, which the consumer turns into one close reason.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

# Close codes. 1001 and 1012 are the websocket standard's (a worker connects
# again, elsewhere or in a moment); the 4000s are ours, one per reason, and
# runtime/observe.py names each in its metrics.
CLOSE_GOING_AWAY = 1001  # this process is shutting down
CLOSE_INTERNAL_ERROR = 1011  # the consumer failed (passed to its own cleanup; never sent)
CLOSE_RESTARTING = 1012  # this process lost its registration: connect again
CLOSE_BAD_SIGNATURE = 4001
CLOSE_BAD_MESSAGE = 4002  # not the protocol: a bad connect message, a garbled frame before it
CLOSE_IDENTITY_IN_USE = 4003  # the signed identity is connected from another address
CLOSE_TIMEOUT = 4008  # no connect message, or a job that never finished
CLOSE_FRAME_TOO_BIG = 4009
CLOSE_RATE_LIMITED = 4029

# The paths of the jobs Queenbee sends: the worker posts `openai_req` to its own
# server at `openai_url` (reference §5), or handles Queenbee's additive ones.
CHAT_URL = "/v1/chat/completions"
VERIFY_URL = "/queenbee/verify"  # teacher-forced scores of another worker's answer (feature `verify`)
FINE_TUNE_URL = "/v1/fine_tuning/jobs"

DEFAULT_CAPABILITIES = ("llama-infer",)
MAX_STRING = 1024
MAX_LIST = 1024
MAX_DEPTH = 32
# Fields stored in columns of their own are capped at the column's width
# (workers/models.py), so a long one is a clear close reason, not a database error.
MAX_VERSION = 64
MAX_PUBKEY = 64  # base64 of a 32-byte key is 44 characters
MAX_SLUG = 64
MAX_PAYOUT = 255
MAX_MODEL_NAME = 300
MAX_CAPABILITIES = 16  # their joined text has a 500-character column
MAX_CAPABILITY = 24
# Queenbee's additive connect field `features`: abilities beyond the original
# protocol. Only workers that announce one get the jobs that need it (routing
# adds a request's features to the capabilities it needs, routing/features.py):
#   verify       /queenbee/verify jobs (teacher-forced scores, workerbee/verify.py)
#   tools        `tools` and `tool_choice` honoured, tool calls answered as OpenAI does
#   json_schema  `response_format` json_object and json_schema, grammar-constrained
#   logprobs     chat `logprobs`/`top_logprobs`, completions `logprobs`
#   n            several choices (`n` > 1) in one job, with their indexes
#   vision       image content parts in messages
#   continue     continuing a partial assistant message (issue 16)
MAX_FEATURES = 16
KNOWN_FEATURES = ("verify", "tools", "json_schema", "logprobs", "n", "vision", "continue")
# A worker that sends no `features` at all is an original workerbee (or a
# client written to its protocol). It posts the request to the llama-cpp-python
# server it runs (reference §5), pinned `^0.2.2` by workerbee 0.3.x (late 2023),
# and no version of that range can be relied on for any feature above: JSON mode
# landed in 0.2.1x and json_schema only in 2024 (and llama-cpp-python's handler
# never read OpenAI's `json_schema` envelope), chat logprobs in 0.2.58, tool calls
# only with the functionary/chatml-function-calling formats, and `n` is ignored.
# Each of those would be a silent 200 that ignored the field, so none is implied.
# Fields every such version takes (stop, seed, max_tokens, temperature …) need
# no feature. Keyed by version so a later original release could imply some.
ORIGINAL_WORKER_FEATURES: tuple[tuple[str, tuple[str, ...]], ...] = (("0", ()),)
# The additive `context_length`: the worker's context window in tokens (0 = not said).
MAX_CONTEXT_LENGTH = 2**24


class ProtocolError(Exception):
    """A worker broke the protocol. `code` is the websocket close code to use.

    Before registration every ProtocolError closes the socket; after it, only a
    `fatal` one does (a garbled frame is counted instead).
    """

    def __init__(self, reason: str, *, code: int = CLOSE_BAD_MESSAGE, fatal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.fatal = fatal


def decode_frame(text: str | None, data: bytes | None, *, max_bytes: int) -> dict[str, Any]:
    """Parse one worker frame: a text frame holding one JSON object."""
    if text is None:
        if data is None:
            raise ProtocolError("empty frame")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("frame is not UTF-8 text") from None
    if len(text) > max_bytes:
        raise ProtocolError(f"frame larger than {max_bytes} bytes", code=CLOSE_FRAME_TOO_BIG, fatal=True)
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolError("frame is not a JSON object")
    if _too_deep(frame, MAX_DEPTH):
        # Legitimate frames nest about 6 deep; deeper ones only exist to make
        # whoever re-encodes them (the API side, msgpack) hit recursion limits.
        raise ProtocolError(f"frame is nested deeper than {MAX_DEPTH} levels")
    return frame


_CONTAINERS = (dict, list)


def _too_deep(value: Any, limit: int) -> bool:
    """Iterative, so a hostile frame cannot exhaust the stack here either."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if item.__class__ is dict else item
        # json.loads makes exact dicts and lists; the class test is the fast one.
        stack.extend((c, depth + 1) for c in [c for c in children if c.__class__ in _CONTAINERS])
    return False


def job_frame(*, openai_url: str, openai_req: dict[str, Any]) -> str:
    """The one frame Queenbee sends a worker: a job (reference §5)."""
    return json.dumps({"openai_url": openai_url, "openai_req": openai_req})


def verify_request(*, model: Any, request_url: str, request: dict[str, Any], completion: Any) -> dict[str, Any]:
    """The `openai_req` of a VERIFY_URL job: score `completion`, another worker's
    answer to `request` (sent to `request_url`), token by token."""
    return {"model": model, "request_url": request_url, "request": request, "completion": completion}


@dataclass(frozen=True)
class GpuInfo:
    name: str | None
    uuid: str | None
    memory: float | None
    clock: int | None
    clock_unit: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "memory": self.memory,
            "clock": self.clock,
            "clock_unit": self.clock_unit,
        }


@dataclass(frozen=True)
class ConnectInfo:
    """A parsed connect message (reference §2), with the units it arrives in."""

    worker_version: str
    capabilities: tuple[str, ...]
    pubkey: str
    slug: str
    sig: str
    ln_address: str
    auth_key: str
    cpu_count: int
    disk_space_mib: int
    ram_bytes: int  # the original's misnamed `vram`
    nv_gpu_count: int | None
    nv_driver_version: str | None
    nv_gpus: tuple[GpuInfo, ...]
    cl_driver_version: str | None
    cl_gpus: tuple[GpuInfo, ...]
    web_gpus: tuple[GpuInfo, ...]
    models: tuple[str, ...]
    features: tuple[str, ...] = ()
    context_length: int = 0

    @property
    def identity(self) -> str:
        """`pubkey[:slug]`, or "" for a worker without a key."""
        if not self.pubkey:
            return ""
        return f"{self.pubkey}:{self.slug}" if self.slug else self.pubkey

    @property
    def is_web(self) -> bool:
        return self.worker_version == "web" or bool(self.web_gpus)

    @property
    def gpu_memory_mib(self) -> float:
        """Usable GPU memory: NVIDIA (MiB) or else OpenCL (MB), as the original compares."""
        nv = sum(g.memory or 0 for g in self.nv_gpus)
        cl = sum(g.memory or 0 for g in self.cl_gpus)
        web = sum(g.memory or 0 for g in self.web_gpus)
        return float(max(nv, cl, web))

    @property
    def gpu_count(self) -> int:
        return max(len(self.nv_gpus), len(self.cl_gpus), len(self.web_gpus))

    @property
    def version_key(self) -> str:
        return version_key(self.worker_version)


_VERSION = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")


def version_key(version: str) -> str:
    """A string that sorts like the dotted version ("" when not dotted ints)."""
    if not _VERSION.match(version):
        return ""
    parts = [int(p) for p in version.split(".")] + [0, 0, 0]
    return ".".join(f"{p:06d}" for p in parts[:4])


def implied_features(worker_version: str) -> tuple[str, ...]:
    """What a worker that sends no `features` field is assumed to support.

    The one place this is decided (see ORIGINAL_WORKER_FEATURES): the entry
    for the highest version not above the worker's, nothing when unparsable.
    """
    key = version_key(worker_version)
    implied: tuple[str, ...] = ()
    for version, features in ORIGINAL_WORKER_FEATURES:
        if key and key >= version_key(version):
            implied = features
    return implied


def _features(msg: dict, worker_version: str) -> tuple[str, ...]:
    if "features" not in msg:
        return implied_features(worker_version)
    # Unknown features are ignored, so a newer worker still connects.
    listed = _str_list(msg, "features", max_items=MAX_FEATURES, max_length=MAX_CAPABILITY)
    return tuple(f for f in dict.fromkeys(listed) if f in KNOWN_FEATURES)


def _str(msg: dict, key: str, default: str = "", *, max_length: int = MAX_STRING) -> str:
    value = msg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ProtocolError(f"connect message: {key} must be a string")
    if len(value) > max_length:
        raise ProtocolError(f"connect message: {key} is longer than {max_length} characters")
    return value


def _opt_str(msg: dict, key: str) -> str | None:
    return _str(msg, key) if msg.get(key) is not None else None


def _int(msg: dict, key: str, *, optional: bool = False) -> int | None:
    value = msg.get(key)
    if value is None:
        return None if optional else 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value > 2**62:
        raise ProtocolError(f"connect message: {key} must be a non-negative number")
    return int(value)


def _str_list(
    msg: dict, key: str, default: tuple[str, ...] = (), *, max_items: int = MAX_LIST, max_length: int = MAX_STRING
) -> tuple[str, ...]:
    value = msg.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or len(value) > max_items:
        raise ProtocolError(f"connect message: {key} must be a list of at most {max_items} strings")
    if not all(isinstance(v, str) and len(v) <= max_length for v in value):
        raise ProtocolError(f"connect message: {key} must hold strings of at most {max_length} characters")
    return tuple(value)


def _gpus(msg: dict, key: str) -> tuple[GpuInfo, ...]:
    value = msg.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 64:
        raise ProtocolError(f"connect message: {key} must be a list of at most 64 GPUs")
    gpus = []
    for item in value:
        if not isinstance(item, dict):
            raise ProtocolError(f"connect message: {key} entries must be objects")
        memory = item.get("memory")
        clock = item.get("clock")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, (int, float))):
            raise ProtocolError(f"connect message: {key}.memory must be a number")
        if memory is not None and not 0 <= memory < 2**40:
            raise ProtocolError(f"connect message: {key}.memory is out of range")
        if clock is not None and (isinstance(clock, bool) or not isinstance(clock, (int, float))):
            raise ProtocolError(f"connect message: {key}.clock must be a number")
        gpus.append(
            GpuInfo(
                name=_opt_str(item, "name"),
                uuid=_opt_str(item, "uuid"),
                memory=float(memory) if memory is not None else None,
                clock=int(clock) if clock is not None else None,
                clock_unit=_opt_str(item, "clock_unit"),
            )
        )
    return tuple(gpus)


def parse_connect_message(msg: dict[str, Any]) -> ConnectInfo:
    """Validate the first frame a worker sends. Missing fields take the original's defaults."""
    if "openai_req" in msg or "cpu_count" not in msg and "worker_version" not in msg:
        raise ProtocolError("first frame must be the connect message")
    worker_version = _str(msg, "worker_version", max_length=MAX_VERSION)
    context_length = _int(msg, "context_length") or 0
    if context_length > MAX_CONTEXT_LENGTH:
        raise ProtocolError(f"connect message: context_length is larger than {MAX_CONTEXT_LENGTH}")
    capabilities = _str_list(
        msg, "capabilities", DEFAULT_CAPABILITIES, max_items=MAX_CAPABILITIES, max_length=MAX_CAPABILITY
    ) or DEFAULT_CAPABILITIES
    return ConnectInfo(
        worker_version=worker_version,
        capabilities=capabilities,
        pubkey=_str(msg, "pubkey", max_length=MAX_PUBKEY),
        slug=_str(msg, "slug", max_length=MAX_SLUG),
        sig=_str(msg, "sig"),
        ln_address=_str(msg, "ln_address", max_length=MAX_PAYOUT) or _str(msg, "ln_url", max_length=MAX_PAYOUT),
        auth_key=_str(msg, "auth_key"),
        cpu_count=_int(msg, "cpu_count") or 0,
        disk_space_mib=_int(msg, "disk_space") or 0,
        ram_bytes=_int(msg, "vram") or 0,
        nv_gpu_count=_int(msg, "nv_gpu_count", optional=True),
        nv_driver_version=_opt_str(msg, "nv_driver_version"),
        nv_gpus=_gpus(msg, "nv_gpus"),
        cl_driver_version=_opt_str(msg, "cl_driver_version"),
        cl_gpus=_gpus(msg, "cl_gpus"),
        web_gpus=_gpus(msg, "web_gpus"),
        models=_str_list(msg, "models", max_length=MAX_MODEL_NAME),
        features=_features(msg, worker_version),
        context_length=context_length,
    )
