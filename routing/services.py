"""Serving one API request: choose a worker, run the job on it, shape the reply, record it.

The flow (DESIGN.md "The flow of one request"): `open_job` claims a connection
that fits (waiting in line if all are busy), sends the job and waits for its first
frame. A worker that errors, times out or disconnects before its first frame is
replaced once by a different worker. After the first frame a non-stream job is
committed to that worker; a stream whose worker fails is continued on another
worker from the text already delivered (routing/continuation.py), a bounded
number of times, and then ends with an error event. While a stream waits for a
frame it sends keep-alive comments (routing/keepalive.py).
"""

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from api.auth import Caller
from api.errors import ApiError, ChannelLayerDown, InvalidRequest, NoWorkerAvailable, WorkerFailed, WorkerTimedOut, error_body
from api.gpu_filter import parse_gpu_filter
from api.model_names import IMAGE_SIZE, ModelName, parse_model
from billing import services as billing
from runtime import observe
from stats.models import EMBEDDINGS, kind_for
from stats.services import Failure, JobOutcome
from trust import usage as usage_bounds
from trust.services import Check
from workers.dispatch import AllBusy, FrameTimeout, JobHandle, LayerDown, Timeouts, WorkerGone, any_worker_fits, claim_job, largest_context
from workers.services import Need, NoWorkerFits

from . import context as request_context
from . import continuation, keepalive
from . import features as request_features
from .models import Job
from .recorder import FinishedJob, recorder

log = logging.getLogger(__name__)

# Worker errors that mean the request itself is wrong: the model filter matches
# several files, so no worker can do better.
AMBIGUOUS_MODEL_MARKERS = ("Multiple files match", "specify a better filter")
# The worker has no such model. An offline worker (ours) says this when the model
# is just not on its disk, so another worker is tried; if none has it, it is the
# caller's mistake.
MISSING_MODEL_MARKERS = ("Can't find gguf",)
# The prompt does not fit the worker's context window (llama-cpp-python's words,
# which the original worker sends too). Another worker may have a larger one, so
# it is tried; if none does, the caller's request is too long.
CONTEXT_MARKERS = ("exceed context window",)
# The request asks for what no worker can do: a schema llama.cpp cannot turn
# into a grammar (workerbee/structured.py). The message starts with the field.
REQUEST_ERROR_MARKERS = ("is not a JSON Schema this worker can enforce", "could not parse the grammar built from it")

_background: set[asyncio.Task] = set()


def in_background(coro) -> None:
    """Run bookkeeping that must survive the request's cancellation."""
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


class WorkerErrorFrame(Exception):
    """The worker answered `{"error": …}`."""


class MalformedReply(WorkerFailed):
    """The worker's reply is not what its job asked for (garbage, for stats)."""


@dataclass(frozen=True)
class JobSpec:
    kind: str
    openai_url: str
    payload: dict[str, Any]
    model: ModelName
    need: Need
    timeouts: Timeouts
    caller: Caller
    stream: bool = False
    ends_with_marker: bool = False
    features: tuple[tuple[str, str], ...] = ()  # (feature, the field that needs it), see features.py


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # the worker reported none: Queenbee counted
    corrected: bool = False  # the worker's report was out of bounds: Queenbee counted (trust/usage.py)

    @classmethod
    def bounded(cls, *, reported: "Usage | None", request: dict[str, Any], text: str, choices: int = 1, counted: int | None = None) -> "Usage":
        """What may be billed: the worker's report within the bounds of what it sent and was asked."""
        c = usage_bounds.bounded(
            reported=(reported.prompt_tokens, reported.completion_tokens) if reported else None,
            request=request, text=text, choices=choices, counted=counted,
        )
        return cls(c.prompt_tokens, c.completion_tokens, estimated=c.estimated, corrected=c.corrected)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass
class OpenedJob:
    """A job whose worker has sent its first frame."""

    spec: JobSpec
    handle: JobHandle
    frames: AsyncIterator[dict[str, Any]]
    first: dict[str, Any]
    attempts: int
    public_id: str
    created: int


# --- Building a job -------------------------------------------------------------


def build_spec(*, kind: str, openai_url: str, data: dict[str, Any], caller: Caller, capabilities: tuple[str, ...], size: float | None = None, total_default: float, stream: bool = False) -> JobSpec:
    model = parse_model(data["model"])
    wanted = parse_gpu_filter(data.get("gpu_filter"))
    capabilities = tuple(dict.fromkeys((*capabilities, *wanted.capabilities)))
    need = Need(
        size=model.size if size is None else size,
        model=model.cli_name,
        capabilities=capabilities,
        worker_kind=model.worker_kind,
        min_version=wanted.min_version,
        pubkey=wanted.pubkey,
        slug=wanted.slug,
        user_id=wanted.user_id,
    )
    # The original sends the filter with the injected capabilities on to the worker.
    payload = {**data, "gpu_filter": {**(data.get("gpu_filter") or {}), "capabilities": list(capabilities)}}
    timeouts = Timeouts(
        first=data.get("ft_timeout") or settings.FIRST_TOKEN_TIMEOUT,
        gap=data.get("ft_timeout") or settings.GAP_TIMEOUT,
        total=data.get("timeout") or total_default,
    )
    return JobSpec(kind, openai_url, payload, model, need, timeouts, caller, stream, ends_with_marker=stream)


def _error_from_frame(frame: dict[str, Any]) -> str:
    error = frame.get("error")
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error)
    return str(error)[:2000]


async def open_job(spec: JobSpec, *, prefix: str) -> OpenedJob:
    """Claim a worker, send the job, and wait for its first frame (one retry elsewhere)."""
    await billing.admit(spec.caller)  # 429 over the key's rate or funds, before any claim
    return await open_on_worker(spec, prefix=prefix)


async def open_on_worker(spec: JobSpec, *, prefix: str, failed_workers: set[int] | None = None) -> OpenedJob:
    """open_job without admission (a continuation was admitted with its stream).
    Workers that fail are added to `failed_workers` and never tried again."""
    failed_workers = set() if failed_workers is None else failed_workers
    last_error: ApiError | None = None
    for attempt in (1, 2):
        need = dataclasses.replace(spec.need, exclude_workers=frozenset(failed_workers))
        try:
            handle = await claim_job(need=need, queue_timeout=settings.QUEUE_TIMEOUT)
        except NoWorkerFits as exc:
            raise last_error or await _too_long(spec) or await _missing_feature(spec) or NoWorkerAvailable(str(exc), code="no_worker_fits") from None
        except LayerDown:  # the live pool (Redis) is unreachable
            raise ChannelLayerDown("Queenbee cannot reach its workers right now (channel layer down); retry shortly.") from None
        except AllBusy:
            raise last_error or NoWorkerAvailable(
                "All workers that can serve this request are busy. Try again shortly.", code="all_workers_busy"
            ) from None
        payload = {**spec.payload, "model": spec.model.for_worker(is_web=handle.claim.is_web)}
        try:
            await handle.send(
                openai_url=spec.openai_url,
                openai_req=payload,
                ends_with_marker=spec.ends_with_marker,
                max_seconds=spec.timeouts.total,
            )
        except LayerDown:
            raise ChannelLayerDown("Queenbee cannot reach its workers right now (channel layer down); retry shortly.") from None
        frames = handle.frames(spec.timeouts)
        try:
            first = await _first_frame(handle, frames)
            if "error" in first:
                raise WorkerErrorFrame(_error_from_frame(first))
            if spec.ends_with_marker and not first:
                raise WorkerErrorFrame("the worker ended the job without any output")
        except WorkerErrorFrame as exc:
            last_error, failure = _client_or_worker_error(str(exc), prompt_field=_prompt_field(spec)), failure_of(exc)
        except WorkerGone as exc:
            last_error, failure = WorkerFailed(f"The worker failed before answering: {exc}."), failure_of(exc)
        except FrameTimeout as exc:
            last_error, failure = WorkerTimedOut(f"Timed out: {exc}."), failure_of(exc)
        else:
            if handle.finished:  # a single-reply job: nothing more will come
                await handle.abandon()
            return OpenedJob(spec, handle, frames, first, attempt, f"{prefix}-{handle.job_id}", int(time.time()))
        await handle.abandon()
        record_job(spec=spec, handle=handle, public_id=f"{prefix}-{handle.job_id}", status=Job.Status.FAILED, error=last_error.message, attempts=attempt, failure=failure)
        if isinstance(last_error, InvalidRequest) and any(m in last_error.message for m in (*AMBIGUOUS_MODEL_MARKERS, *REQUEST_ERROR_MARKERS)):
            raise last_error
        failed_workers.add(handle.claim.worker_id)
        await asyncio.sleep(settings.RETRY_DELAY)
    raise last_error


async def _first_frame(handle: JobHandle, frames: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await anext(frames)
    except asyncio.CancelledError:
        # The caller left while the worker prepared (a stream opening behind
        # keep-alives is cancelled then): the connection drains as after any leave.
        in_background(handle.abandon())
        raise


def _prompt_field(spec: JobSpec) -> str:
    return "prompt" if "prompt" in spec.payload else "messages"


async def _too_long(spec: JobSpec) -> ApiError | None:
    """OpenAI's 400 for a too-long request, when context is why no worker fits.

    Workers that could serve the request but for their context exist, and each
    announced a window too small for it (routing/context.py counts what it
    needs). A worker that announced none would have fitted: then, or when no
    worker could serve it whatever its context, this is not the reason.
    """
    if not spec.need.context_tokens:
        return None
    largest = await largest_context(need=spec.need)
    if largest is None or largest >= spec.need.context_tokens:
        return None  # none fits whatever its context, or one that holds it just joined
    field = _prompt_field(spec)
    need = request_context.context_need(spec.payload)
    return InvalidRequest(request_context.describe_too_long(need, largest=largest, field=field), param=field, code="context_length_exceeded")


async def _missing_feature(spec: JobSpec) -> ApiError | None:
    """A 400 naming the feature and field, when a feature is why no worker fits.

    Workers that could serve the request without its features exist, but none
    has one of them: the caller learns what to drop to be served now. When no
    worker could serve it even without them, the usual 503 says what it needs.
    """
    if not spec.features:
        return None
    needed = {feature for feature, _ in spec.features}
    # Whatever their context: a feature no worker has is named however long the request is.
    base = dataclasses.replace(spec.need, capabilities=tuple(c for c in spec.need.capabilities if c not in needed), context_tokens=0)
    if not await any_worker_fits(need=base):
        return None
    for feature, field in spec.features:
        if not await any_worker_fits(need=dataclasses.replace(base, capabilities=(*base.capabilities, feature))):
            return InvalidRequest(request_features.describe_missing(feature, field), param=field, code="unsupported_feature")
    feature, field = spec.features[0]  # each alone fits, not all together
    return InvalidRequest(request_features.describe_missing(feature, field), param=field, code="unsupported_feature")


def _client_or_worker_error(message: str, *, prompt_field: str = "messages") -> ApiError:
    if any(marker in message for marker in REQUEST_ERROR_MARKERS):
        return InvalidRequest(f"The worker refused the request: {message}", param=message.split(" ", 1)[0].rstrip(":"))
    if any(marker in message for marker in CONTEXT_MARKERS):
        return InvalidRequest(f"The prompt is too long for the worker: {message}", param=prompt_field, code="context_length_exceeded")
    if any(marker in message for marker in (*AMBIGUOUS_MODEL_MARKERS, *MISSING_MODEL_MARKERS)):
        return InvalidRequest(f"The worker could not load this model: {message}", param="model", code="model_not_found")
    return WorkerFailed(f"The worker failed: {message}")


def failure_of(exc: BaseException) -> str:
    """What the worker did wrong, for its stats; "" when it is not to blame."""
    if isinstance(exc, WorkerErrorFrame):
        text = str(exc)
        if any(marker in text for marker in (*AMBIGUOUS_MODEL_MARKERS, *MISSING_MODEL_MARKERS, *REQUEST_ERROR_MARKERS, *CONTEXT_MARKERS)):
            return ""  # it lacks the model the caller named, or the request is wrong or too long: not a fault
        return Failure.BUSY if text.strip().lower() == "busy" else Failure.ERROR
    if isinstance(exc, WorkerGone):
        return Failure.DISCONNECT
    if isinstance(exc, FrameTimeout):
        return Failure.TIMEOUT
    if isinstance(exc, MalformedReply):
        return Failure.GARBAGE
    if isinstance(exc, WorkerFailed):
        return Failure.ERROR  # an error frame after the first token
    return ""


# --- Recording ----------------------------------------------------------------------


def record_job(*, spec: JobSpec, handle: JobHandle, public_id: str, status: str, error: str = "", attempts: int = 1, usage: Usage | None = None, images: int = 0, failure: str = "", check: Check | None = None, continuations: int = 0, measured: Usage | None = None) -> None:
    """Log the finished job and hand its stats, record and charges to the batch writer.

    `usage` is what is billed; `measured` (default: the same) what this worker
    produced itself, for its stats: a stream's last worker after a continuation
    bills the whole answer but was only as fast as its own part.
    """
    usage = usage or Usage()
    measured = measured or usage
    observe.job_recorded(spec=spec, handle=handle, public_id=public_id, status=status, error=error, attempts=attempts, usage=usage)
    now = time.monotonic()
    first_token = (handle.first_frame_at - handle.started_at) if handle.first_frame_at else None
    outcome = None
    if status != Job.Status.CANCELLED:  # a caller leaving says nothing about the worker
        outcome = JobOutcome(
            public_id=public_id,
            kind=EMBEDDINGS if spec.kind == Job.Kind.EMBEDDINGS else kind_for(spec.need.capabilities),
            size=spec.need.size,
            succeeded=status == Job.Status.SUCCEEDED,
            failure=failure,
            started_at=timezone.now() - timedelta(seconds=now - handle.started_at),
            seconds=now - handle.started_at,
            stream=spec.stream,
            prompt_tokens=measured.prompt_tokens,
            completion_tokens=measured.completion_tokens,
            images=images,
            first_token_seconds=first_token,
            already_loaded=handle.claim.already_loaded,
        )
    recorder.record(FinishedJob(worker_id=handle.claim.worker_id, outcome=outcome, bill_to=spec.caller.bill_to, check=check, trust_state=handle.claim.trust_state, fields=dict(
        public_id=public_id,
        kind=spec.kind,
        model=spec.model.name,
        model_size=spec.need.size,
        stream=spec.stream,
        api_key_id=spec.caller.api_key_id,
        caller=spec.caller.label,
        worker_id=handle.claim.worker_id,
        status=status,
        error=error,
        attempts=attempts,
        continuations=continuations,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        usage_estimated=usage.estimated,
        usage_corrected=usage.corrected,
        images=images,
        queue_seconds=handle.queue_seconds,
        first_token_seconds=first_token,
        total_seconds=now - handle.started_at,
    )))


# --- Usage ------------------------------------------------------------------------------


# What a model writes around a call's name and arguments but the answer does not
# carry (`{"name": "…", "arguments": …}` and the spaces a grammar allows, or a
# template's call tags): counted as delivered text, so an honest worker's
# completion tokens stay within the bounds of what it sent (trust/usage.py).
TOOL_CALL_WRAPPER = " " * 64


def delivered_text(part: dict[str, Any]) -> str:
    """The text of one choice (or stream delta): its content, or tool calls' names and arguments."""
    if not isinstance(part, dict):
        return ""
    text = part.get("text")
    if isinstance(text, str):
        return text
    content = part.get("content")
    out = content if isinstance(content, str) else usage_bounds.text_of(content)
    for call in part.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            out += str(function.get("name") or "") + str(function.get("arguments") or "")
            if function.get("name"):  # a call's first part (in a stream, its first delta)
                out += TOOL_CALL_WRAPPER
    return out


# Answers shaped by a grammar (json_schema, forced tool calls) or by a tools
# prompt the verifier does not rebuild: the model's raw distribution, which
# teacher forcing scores, would refute honest work.
UNVERIFIABLE_FEATURES = ("tools", "json_schema")


def check_of(job: "OpenedJob", *, text: str, finish_reason: Any) -> Check | None:
    """What a verifier needs to re-score this text completion (None for other kinds)."""
    if job.spec.kind != Job.Kind.CHAT:
        return None
    if any(feature in UNVERIFIABLE_FEATURES for feature, _ in job.spec.features):
        return None
    return Check(
        job_id=job.public_id,
        openai_url=job.spec.openai_url,
        request={**job.spec.payload, "model": job.spec.model.for_worker(is_web=False)},
        completion=text,
        finish_reason=finish_reason if isinstance(finish_reason, str) else "",
        need=job.spec.need,
        seconds=time.monotonic() - job.handle.started_at,
    )


def usage_from(reply: dict[str, Any]) -> Usage | None:
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int) or prompt < 0 or completion < 0:
        return None
    return Usage(prompt, completion)


# --- Chat -------------------------------------------------------------------------------


def chat_spec(*, data: dict[str, Any], caller: Caller, openai_url: str = "/v1/chat/completions") -> JobSpec:
    """A chat or text completion's job: it needs `llama-infer`, the features its
    fields ask for, and a context window that holds it (routing/context.py)."""
    features = tuple(request_features.needed_features(data).items())
    if data.get("max_completion_tokens") and not data.get("max_tokens"):
        # The original worker's llama-cpp-python knows only the older name.
        data = {**data, "max_tokens": data["max_completion_tokens"]}
    spec = build_spec(
        kind=Job.Kind.CHAT,
        openai_url=openai_url,
        data=data,
        caller=caller,
        capabilities=("llama-infer", *(feature for feature, _ in features)),
        total_default=settings.TOTAL_TIMEOUT,
        stream=bool(data.get("stream")),
    )
    need = dataclasses.replace(spec.need, context_tokens=request_context.context_need(data).prompt_tokens)
    return dataclasses.replace(spec, need=need, features=features)


def shape_completion(reply: dict[str, Any], job: OpenedJob, *, object_name: str) -> tuple[dict[str, Any], Usage]:
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("The worker sent a malformed reply (no choices).")
    texts = [delivered_text(c.get("message") or c) if isinstance(c, dict) else "" for c in choices]
    usage = Usage.bounded(reported=usage_from(reply), request=job.spec.payload, text="".join(texts), choices=len(choices))
    shaped = {
        **reply,
        "id": job.public_id,
        "object": object_name,
        "created": reply.get("created") if isinstance(reply.get("created"), int) else job.created,
        "model": job.spec.model.name,
        "usage": usage.as_dict(),
    }
    return shaped, usage


async def complete(*, spec: JobSpec, prefix: str, object_name: str) -> dict[str, Any]:
    """A non-stream chat or text completion."""
    job = await open_job(spec, prefix=prefix)
    try:
        reply, usage = shape_completion(job.first, job, object_name=object_name)
    except ApiError as exc:
        record_job(spec=spec, handle=job.handle, public_id=job.public_id, status=Job.Status.FAILED, error=exc.message, attempts=job.attempts, failure=failure_of(exc))
        raise
    first = reply["choices"][0] if isinstance(reply["choices"][0], dict) else {}
    check = check_of(job, text=delivered_text(first.get("message") or first), finish_reason=first.get("finish_reason"))
    record_job(spec=spec, handle=job.handle, public_id=job.public_id, status=Job.Status.SUCCEEDED, attempts=job.attempts, usage=usage, check=check)
    return reply


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n"


class StreamRelay:
    """Turns workers' stream frames into the OpenAI chunks of one stream and counts their tokens.

    A continued stream has several parts, one per worker; the caller sees one
    stream: the first part's id, created and model, one role chunk, and usage
    covering every part.
    """

    def __init__(self, job: OpenedJob, *, object_name: str):
        self.job = job  # the first part: the stream's id, request and start
        self.object_name = object_name
        self.completion_tokens = 0
        self.reported: Usage | None = None
        self.texts: dict[int, list[str]] = {}  # what each choice delivered, for bounds and verification
        self.finish_reason: Any = None
        self.tool_calls = False
        self.parts = 1
        self.earlier_tokens = 0  # counted in the parts before the current one

    def chunk(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        """The caller's chunk for one frame; None when it has nothing to say (a
        continuation's role chunk: the caller had the first part's)."""
        choices = frame.get("choices")
        if not isinstance(choices, list):
            raise MalformedReply("The worker sent a malformed stream chunk.")
        said = self.parts == 1
        for choice in choices:
            if not isinstance(choice, dict):
                raise MalformedReply("The worker sent a malformed stream chunk.")
            if "message" in choice and "delta" not in choice:  # browser workers
                choice["delta"] = choice.pop("message")
            delta = choice.get("delta") or {}
            if isinstance(delta, dict) and self.parts > 1:
                delta.pop("role", None)
            if isinstance(delta, dict) and delta.get("tool_calls"):
                self.tool_calls = True
            if isinstance(delta, dict) and delta.get("content") or choice.get("text"):
                self.completion_tokens += 1  # llama.cpp streams one token per chunk
            text = delivered_text(delta if "text" not in choice else choice)
            said = said or bool(text or delta or choice.get("finish_reason"))
            index = choice.get("index", 0)
            self.texts.setdefault(index if isinstance(index, int) else 0, []).append(text)
            if index == 0 and choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.reported = usage_from(frame) or self.reported
        frame.pop("usage", None)
        if not said:
            return None
        return {**frame, "id": self.job.public_id, "object": self.object_name, "created": self.job.created, "model": self.job.spec.model.name}

    def text(self, index: int | None = None) -> str:
        parts = self.texts.get(index, []) if index is not None else [p for ps in self.texts.values() for p in ps]
        return "".join(parts)

    def usage(self) -> Usage:
        """What the caller pays: the whole answer, every part."""
        reported = self.reported
        if reported is not None and self.parts > 1:
            # The last worker's prompt held the text delivered before it, which
            # the caller pays as completion, not twice.
            reported = Usage(max(0, reported.prompt_tokens - self.earlier_tokens), self.earlier_tokens + reported.completion_tokens)
        return Usage.bounded(
            reported=reported, request=self.job.spec.payload, text=self.text(), choices=max(1, len(self.texts)),
            counted=self.completion_tokens,
        )

    def part_usage(self) -> Usage:
        """What the current part's worker produced itself, for its stats."""
        if self.reported is not None:
            return Usage(self.reported.prompt_tokens, self.reported.completion_tokens)
        return Usage(0, self.completion_tokens - self.earlier_tokens, estimated=True)

    def answered(self) -> bool:
        """Whether the only choice has finished (its finish_reason delivered)."""
        return self.finish_reason is not None and set(self.texts) <= {0}

    def limit_reached(self) -> bool:
        spec = self.job.spec
        return set(self.texts) <= {0} and continuation.limit_reached(openai_url=spec.openai_url, payload=spec.payload, delivered_tokens=self.completion_tokens)

    def finish(self, reason: str) -> dict[str, Any]:
        """The last chunk of the only choice, when its worker could not send it."""
        self.finish_reason = reason
        choice = {"index": 0, "text": ""} if self.job.spec.openai_url == continuation.COMPLETIONS_URL else {"index": 0, "delta": {}}
        choice.update(logprobs=None, finish_reason=reason)
        return {"id": self.job.public_id, "object": self.object_name, "created": self.job.created, "model": self.job.spec.model.name, "choices": [choice]}

    # --- Continuation -------------------------------------------------------------

    def continuation_spec(self) -> JobSpec | None:
        """The job that continues this stream on another worker, or None when it may not."""
        first = self.job.spec
        remaining = first.timeouts.total - (time.monotonic() - self.job.handle.started_at)
        if self.parts > settings.STREAM_CONTINUATIONS or remaining < MIN_CONTINUATION_SECONDS:
            return None
        if not continuation.continuable(openai_url=first.openai_url, payload=first.payload, choices=set(self.texts), tool_calls=self.tool_calls, finished=self.finish_reason is not None):
            return None
        continued = continuation.continued_request(
            openai_url=first.openai_url, payload=first.payload, need=first.need,
            delivered=continuation.Delivered(self.text(0), self.completion_tokens),
        )
        if continued is None:
            return None
        payload, need = continued
        return dataclasses.replace(first, payload=payload, need=need, timeouts=dataclasses.replace(first.timeouts, total=remaining))

    def begin_part(self) -> None:
        self.parts += 1
        self.earlier_tokens = self.completion_tokens
        self.reported = None

    def part_id(self) -> str:
        """The record of a failed part: its own row, next to the stream's."""
        return f"{self.job.public_id}-part{self.parts}"


# A continuation needs time for a new worker's prompt; a stream this close to its
# total timeout ends instead.
MIN_CONTINUATION_SECONDS = 1.0


async def stream(*, spec: JobSpec, prefix: str, object_name: str) -> AsyncIterator[str]:
    """Open the job and return the server-sent events of the stream.

    An error before the first frame raises, so the view answers with a status
    code, unless the first frame takes longer than a keep-alive interval: then
    the response has begun with keep-alive comments and the error comes as an
    error event.
    """
    slot = await billing.take_stream_slot(spec.caller)  # 429 over the key's concurrent streams
    opening = keepalive.awaiting(open_job(spec, prefix=prefix), interval=settings.STREAM_KEEPALIVE_INTERVAL)
    try:
        first = await anext(opening)
    except BaseException:
        await opening.aclose()
        await billing.release_stream_slot(slot)
        raise
    return _relay(first, opening, prefix=prefix, object_name=object_name, slot=slot)


async def _relay(first: OpenedJob | str, opening: AsyncIterator[Any], *, prefix: str, object_name: str, slot: str | None) -> AsyncIterator[str]:
    """Keep-alives until the first frame, then each part's chunks (continuing on
    another worker when one fails), then `[DONE]` or one error event."""
    job: OpenedJob | None = None
    relay: StreamRelay | None = None
    status, error, failure, check = Job.Status.CANCELLED, "", "", None
    try:
        async with aclosing(opening):
            while isinstance(first, str):
                yield first
                first = await anext(opening)
        job, relay = first, StreamRelay(first, object_name=object_name)
        failed_workers: set[int] = set()
        while True:
            try:
                async with aclosing(_part_events(job, relay)) as events:
                    async for event in events:
                        yield event
                break
            except (WorkerGone, FrameTimeout, ApiError) as exc:
                if relay.answered():
                    break  # the worker died between its last chunk and its end marker: nothing is missing
                if relay.limit_reached():
                    yield sse(relay.finish("length"))  # it died before saying the limit was reached
                    break
                spec = relay.continuation_spec()
                if spec is None:
                    raise
                # Until the next part has its first frame, this part's failure is
                # the stream's (a caller leaving meanwhile still punishes it).
                status, error, failure = Job.Status.FAILED, _stream_error(exc).message, failure_of(exc)
                async with aclosing(_take_over(job, spec, failure=exc, prefix=prefix, failed_workers=failed_workers)) as opening:
                    async for item in opening:
                        if isinstance(item, str):
                            yield item
                        else:
                            next_job = item
                in_background(_finish_part(job, public_id=relay.part_id(), error=error, failure=failure, usage=relay.part_usage()))
                status, error, failure = Job.Status.CANCELLED, "", ""
                job = next_job
                relay.begin_part()
        if (relay.job.spec.payload.get("stream_options") or {}).get("include_usage"):
            yield sse({"id": relay.job.public_id, "object": object_name, "created": relay.job.created, "model": relay.job.spec.model.name, "choices": [], "usage": relay.usage().as_dict()})
        yield sse("[DONE]")
        status = Job.Status.SUCCEEDED
        check = check_of(relay.job, text=relay.text(0), finish_reason=relay.finish_reason)
    except (WorkerGone, FrameTimeout, ApiError) as exc:
        api_error = _stream_error(exc)
        status, error, failure = Job.Status.FAILED, api_error.message, failure_of(exc) if job else ""
        # Mid-stream, the error names no request field (`param`), whatever stopped it.
        yield sse(error_body(api_error.message, type=api_error.type, code=api_error.code))
    finally:
        if job is None:  # the job never opened: open_job recorded its attempts
            in_background(billing.release_stream_slot(slot))
        else:
            in_background(_finish(job, relay, status=status, error=error, failure=failure, slot=slot, check=check))


async def _take_over(job: OpenedJob, spec: JobSpec, *, failure: Exception, prefix: str, failed_workers: set[int]) -> AsyncIterator[str | OpenedJob]:
    """Keep-alives while another worker takes over the failed `job`'s stream, then
    its opened job; raises the stream's own `failure` when none can."""
    failed_workers.add(job.handle.claim.worker_id)
    await job.handle.abandon()  # a stalled worker's connection drains meanwhile
    opening = keepalive.awaiting(open_on_worker(spec, prefix=prefix, failed_workers=failed_workers), interval=settings.STREAM_KEEPALIVE_INTERVAL)
    try:
        async with aclosing(opening):
            async for item in opening:
                yield item
    except ApiError:
        raise failure from None


async def _part_events(job: OpenedJob, relay: StreamRelay) -> AsyncIterator[str]:
    """One worker's part of a stream as server-sent events, from its first frame
    to its `{}` end, with keep-alives in its long gaps. The events of frames that
    arrived together are one string: one body message, one socket write."""
    async with aclosing(keepalive.frames(job.frames, interval=settings.STREAM_KEEPALIVE_INTERVAL)) as rest:
        frames: list[dict[str, Any]] | str | None = [job.first]
        while frames:
            if isinstance(frames, str):
                yield frames
            else:
                events: list[str] = []
                try:
                    for frame in frames:
                        if "error" in frame:
                            raise WorkerFailed(f"The worker failed mid-stream: {_error_from_frame(frame)}")
                        if (chunk := relay.chunk(frame)) is not None:
                            events.append(sse(chunk))
                except Exception:
                    # relay.chunk counted these frames as delivered (the text a
                    # continuation starts from): the caller gets them whatever
                    # stops the batch (an error frame, a malformed chunk).
                    if events:
                        yield "".join(events)
                    raise
                if events:
                    yield "".join(events)
            frames = await anext(rest, None)


def _stream_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, FrameTimeout):
        return WorkerTimedOut(f"Timed out: {exc}.")
    return WorkerFailed(f"The worker disconnected mid-stream: {exc}.")


async def _finish_part(job: OpenedJob, *, public_id: str, error: str, failure: str, usage: Usage) -> None:
    """Record a part whose worker failed and whose stream went on elsewhere:
    failed, so never billed nor paid; its worker punished as for any failure."""
    await job.handle.abandon()
    record_job(spec=job.spec, handle=job.handle, public_id=public_id, status=Job.Status.FAILED, error=error, attempts=job.attempts, usage=usage, failure=failure)


async def _finish(job: OpenedJob, relay: StreamRelay, *, status: str, error: str, failure: str = "", slot: str | None = None, check: Check | None = None) -> None:
    """Record the stream's last part under the stream's id, with the usage of the whole answer."""
    await billing.release_stream_slot(slot)
    await job.handle.abandon()
    continued = relay.parts > 1
    record_job(
        spec=relay.job.spec, handle=job.handle, public_id=relay.job.public_id, status=status, error=error, attempts=job.attempts,
        usage=relay.usage(), failure=failure, check=check, continuations=relay.parts - 1, measured=relay.part_usage() if continued else None,
    )


# --- Embeddings and images ------------------------------------------------------------------


def embeddings_spec(*, data: dict[str, Any], caller: Caller) -> JobSpec:
    model = parse_model(data["model"])
    capabilities = ("fast-embed",) if model.kind == "fastembed" else ("llama-infer",)
    return build_spec(kind=Job.Kind.EMBEDDINGS, openai_url="/v1/embeddings", data=data, caller=caller, capabilities=capabilities, total_default=settings.EMBEDDINGS_TIMEOUT)


async def embeddings(*, spec: JobSpec) -> dict[str, Any]:
    job = await open_job(spec, prefix="embd")
    reply = job.first
    data = reply.get("data")
    if not isinstance(data, list) or not all(isinstance(d, dict) and "embedding" in d for d in data):
        record_job(spec=spec, handle=job.handle, public_id=job.public_id, status=Job.Status.FAILED, error="malformed embeddings reply", attempts=job.attempts, failure=Failure.GARBAGE)
        raise MalformedReply("The worker sent a malformed embeddings reply.")
    usage = Usage.bounded(reported=usage_from(reply), request=spec.payload, text="")
    record_job(spec=spec, handle=job.handle, public_id=job.public_id, status=Job.Status.SUCCEEDED, attempts=job.attempts, usage=usage)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": d.get("index", i), "embedding": d["embedding"]} for i, d in enumerate(data)],
        "model": spec.model.name,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }


def images_spec(*, data: dict[str, Any], caller: Caller) -> JobSpec:
    return build_spec(kind=Job.Kind.IMAGES, openai_url="/v1/images/generations", data=data, caller=caller, capabilities=("sdxl",), size=IMAGE_SIZE, total_default=settings.IMAGES_TIMEOUT)


async def images(*, spec: JobSpec) -> dict[str, Any]:
    job = await open_job(spec, prefix="img")
    reply = job.first
    data = reply.get("data")
    if not isinstance(data, list) or not all(isinstance(d, dict) and ("b64_json" in d or "url" in d) for d in data):
        record_job(spec=spec, handle=job.handle, public_id=job.public_id, status=Job.Status.FAILED, error="malformed images reply", attempts=job.attempts, failure=Failure.GARBAGE)
        raise MalformedReply("The worker sent a malformed images reply.")
    record_job(spec=spec, handle=job.handle, public_id=job.public_id, status=Job.Status.SUCCEEDED, attempts=job.attempts, images=len(data))
    created = reply.get("created") if isinstance(reply.get("created"), int) else job.created
    return {"created": created, "data": data}

