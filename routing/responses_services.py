"""Serving `/v1/responses` on the chat path, and keeping responses for their owner.

A Responses request becomes one chat job (routing/responses.py translates):
`services.complete` and `services.stream` choose the worker, retry, record
the job, feed stats and trust and bill the caller exactly as for
`/v1/chat/completions`. The Response id is that job's public id, so the
ledger and the job list point at it.

A response is stored (unless `store: false`) before it is returned, or before
`response.completed` is sent, so a caller may continue it at once.
"""

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django import db
from rest_framework.exceptions import ValidationError

from api.auth import Caller
from api.errors import ApiError, InvalidRequest, NotFound
from finetune import selectors as fine_tuned
from runtime.db import storable

from . import services
from .keepalive import KEEPALIVE
from .models import StoredResponse
from .responses import EventTranslator, chat_request, input_items, response_from_completion, sse_event
from .serializers import ChatCompletionSerializer, validate

log = logging.getLogger(__name__)

# Chat fields built from Responses fields: an error in one names the field the caller sent.
CALLER_NAMES = {"messages": "input", "max_tokens": "max_output_tokens", "response_format": "text.format"}


@contextlib.contextmanager
def _named_as_sent():
    """The chat path's refusals (a prompt too long for every worker, a feature
    none has) name the Responses field the caller sent."""
    try:
        yield
    except ApiError as exc:
        exc.param = CALLER_NAMES.get(exc.param, exc.param)
        raise

# Job ids of Responses requests: resp-<hex>, the Response id too.
PREFIX = "resp"


def _not_found(response_id: str, *, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param=param, code="response_not_found")


async def _context(*, owner: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The items this turn is generated from: the continued response's, then the input."""
    previous = body.get("previous_response_id")
    before: list[dict[str, Any]] = []
    if previous:
        row = await StoredResponse.objects.kept().filter(public_id=previous, owner=owner).values_list("context", "body").afirst()
        if row is None:  # another owner's response is not found either
            raise _not_found(previous, param="previous_response_id")
        before = row[0] + row[1]["output"]
    return before + input_items(body["input"])


async def _spec(*, body: dict[str, Any], context: list[dict[str, Any]], caller: Caller, base_url: str) -> services.JobSpec:
    chat = _validated_chat(chat_request(body, context=context))
    spec = services.chat_spec(data=chat, caller=caller)
    return await fine_tuned.with_fine_tuned_model(spec, base_url=base_url)


def _validated_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """The chat endpoint's own validation, for the fields passed through unchanged
    (and the limits of the conversation built from stored items)."""
    try:
        return validate(ChatCompletionSerializer, chat)
    except ValidationError as exc:
        if not isinstance(exc.detail, dict):
            raise
        raise ValidationError({CALLER_NAMES.get(key, key): value for key, value in exc.detail.items()}) from None


async def _store(*, owner: str, body: dict[str, Any], context: list[dict[str, Any]], response: dict[str, Any]) -> None:
    if body.get("store") is False:
        return
    try:
        await StoredResponse.objects.acreate(
            public_id=response["id"], owner=owner, model=response["model"], context=storable(context), body=storable(response),
        )
        await StoredResponse.objects.expired().filter(owner=owner).adelete()  # the owner's own, by its index
    except (db.OperationalError, db.InterfaceError, db.DataError) as exc:  # the answer is served all the same
        log.warning("response %s not stored: %s", response["id"], exc)


async def create_response(*, body: dict[str, Any], caller: Caller, owner: str, base_url: str) -> dict[str, Any]:
    """A Response, generated as one chat completion."""
    context = await _context(owner=owner, body=body)
    spec = await _spec(body=body, context=context, caller=caller, base_url=base_url)
    with _named_as_sent():
        completion = await services.complete(spec=spec, prefix=PREFIX, object_name="chat.completion")
    response = response_from_completion(completion, body=body)
    await _store(owner=owner, body=body, context=context, response=response)
    return response


async def stream_response(*, body: dict[str, Any], caller: Caller, owner: str, base_url: str) -> AsyncIterator[str]:
    """Open the chat stream (errors before the first token raise, for a status code),
    then return the Responses events of the rest."""
    context = await _context(owner=owner, body=body)
    spec = await _spec(body=body, context=context, caller=caller, base_url=base_url)
    with _named_as_sent():
        chunks = await services.stream(spec=spec, prefix=PREFIX, object_name="chat.completion.chunk")
    return _events(chunks, body=body, owner=owner, context=context)


async def _events(chunks: AsyncIterator[str], *, body: dict[str, Any], owner: str, context: list[dict[str, Any]]) -> AsyncIterator[str]:
    translator = EventTranslator(body)
    try:
        # Read the chat stream to its end, `[DONE]` included: the chat path
        # records the job as succeeded (and bills it) only after that.
        async for item in chunks:
            for data in _sse_data(item):
                if data is None:  # a keep-alive comment while the chat stream waits
                    yield KEEPALIVE
                    continue
                if data == "[DONE]":
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    for event in translator.failed(chunk["error"]):
                        yield sse_event(event)
                    return
                for event in _translated(translator, chunk):
                    yield sse_event(event)
        events, final = translator.finish()
        for event in events:
            yield sse_event(event)
        await _store(owner=owner, body=body, context=context, response=final)
        yield sse_event(translator.done(final))
    finally:
        await chunks.aclose()


def _sse_data(item: str) -> Iterator[str | None]:
    """The data of each server-sent event in one item of the chat stream (the
    events of frames that arrived together come as one string); None for a
    keep-alive comment."""
    for event in item.split("\n\n"):
        if event.startswith("data: "):
            yield event.removeprefix("data: ").strip()
        elif event.startswith(":"):
            yield None


def _translated(translator: EventTranslator, chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The Responses events of one chat chunk (the opening ones before the first)."""
    opening = translator.start(chunk) if translator.response is None else []
    return [*opening, *translator.chunk(chunk)]


async def retrieve_response(*, owner: str, response_id: str) -> dict[str, Any]:
    body = await StoredResponse.objects.kept().filter(public_id=response_id, owner=owner).values_list("body", flat=True).afirst()
    if body is None:
        raise _not_found(response_id)
    return body


async def delete_response(*, owner: str, response_id: str) -> dict[str, Any]:
    deleted, _ = await StoredResponse.objects.kept().filter(public_id=response_id, owner=owner).adelete()
    if not deleted:
        raise _not_found(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


async def list_input_items(*, owner: str, response_id: str, order: str = "desc", after: str | None = None, limit: int = 20) -> dict[str, Any]:
    """The items a stored response was generated from, OpenAI's list page."""
    context = await StoredResponse.objects.kept().filter(public_id=response_id, owner=owner).values_list("context", flat=True).afirst()
    if context is None:
        raise _not_found(response_id)
    items = context if order == "asc" else context[::-1]
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}' in this response.", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
