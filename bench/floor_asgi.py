"""The physical floor: a bare ASGI app answering the bench's requests itself,
with the same payloads the swarm's workers send (run under the same server)."""

import json

from bench.swarm import _reply


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    req = json.loads(body) if body else {"messages": [{"content": ""}]}
    frames = _reply(req)
    if not req.get("stream"):
        payload = frames[0].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        return await send({"type": "http.response.body", "body": payload})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for frame in frames[:-1]:
        await send({"type": "http.response.body", "body": f"data: {frame}\n\n".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
