"""ASGI lifespan events, for the servers that send them (uvicorn; daphne sends none).

uvicorn's shutdown runs after the SIGTERM drain has handed over to it
(workers/liveness.py): it stops listening, lets the requests still open end
(up to its graceful timeout), then sends `lifespan.shutdown`. Jobs that ended
in that time have records still waiting for the batch writer; they are written
here, before the process exits.
"""

from workers.liveness import registry


async def lifespan(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await registry.write_pending()
            await send({"type": "lifespan.shutdown.complete"})
            return
