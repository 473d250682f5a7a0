"""Where the process runtime starts and stops, under either server.

uvicorn sends ASGI lifespan events: `lifespan.startup` starts the runtime, and
`lifespan.shutdown` stops it (after a SIGTERM drain it runs the stop steps again:
uvicorn has let the requests still open end, and their jobs have records to
write before the process exits). Daphne sends none, so the first HTTP request or
websocket starts the runtime on daphne's loop, before the application sees it (a
load balancer's health check will do), and SIGTERM stops it.
"""

from .process import Process, process


def serving(app, *, runtime: Process = process):
    """`app` (the ASGI application) with the process runtime started and stopped around it."""

    async def application(scope, receive, send):
        if scope["type"] == "lifespan":
            return await lifespan(receive, send, runtime=runtime)
        if not runtime.running:
            await runtime.start()
        return await app(scope, receive, send)

    return application


async def lifespan(receive, send, *, runtime: Process) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await runtime.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await runtime.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
