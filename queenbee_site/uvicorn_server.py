"""Serve Queenbee with uvicorn instead of daphne: `python -m queenbee_site.uvicorn_server [uvicorn options]`.

uvicorn (with uvloop and httptools) relays more requests and stream chunks per
core than daphne for the same code (bench/RESULTS.md). This runs uvicorn's own
command line with the defaults Queenbee needs, so that any uvicorn option
(`--host`, `--port`, `--fd`, `--uds`, ...) can still be passed and wins:

- the application, `queenbee_site.asgi:application`;
- `--ws-max-size` from WORKER_MAX_FRAME_BYTES (uvicorn's 16 MiB would close a
  worker sending one large image reply; bigger messages close with 1009);
- `--no-proxy-headers`: Queenbee reads X-Forwarded-For itself, and only from
  TRUSTED_PROXIES (runtime/client_ip.py); uvicorn would trust any local
  peer's header, and the per-address worker limits with it;
- `--lifespan on`: the process runtime starts at startup and, at shutdown,
  writes the last finished jobs (runtime/asgi.py); the process still registers
  itself in the database on its first worker, as under daphne;
- `--timeout-graceful-shutdown` 5 s: a SIGTERM first drains running jobs for up
  to SHUTDOWN_GRACE (runtime/process.py), then hands over to uvicorn, which
  stops listening and gives requests still open (a stream relayed from another
  process's worker, a request waiting in line) this long before cancelling
  them, as daphne cuts them off when its reactor stops;
- no per-message deflate: daphne does not compress either, and compressing every
  token frame costs CPU for a few bytes;
- uvloop, httptools and the websockets sans-I/O protocol, named so that a missing
  package fails at start instead of silently falling back;
- no access log: Queenbee logs one structured line per request itself.

What daphne needs adjusting for (queenbee_site/daphne_compat.py) uvicorn does
itself: it sends close reasons and codes 1001/1012 as given, reads a socket's
next frame only once the consumer took the last one (backpressure), and leaves
request bodies to Django. Settings come from the environment as under daphne
(uvicorn's `--env-file` is read after them, too late).
"""

import os
import sys

APPLICATION = "queenbee_site.asgi:application"
# After the drain: how long uvicorn lets the requests still open end (see above).
GRACEFUL_SHUTDOWN_SECONDS = 5


def defaults() -> dict:
    """uvicorn's options as Queenbee sets them (click's default_map: the command line wins)."""
    from django.conf import settings

    return {
        "ws_max_size": settings.WORKER_MAX_FRAME_BYTES,
        "proxy_headers": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "ws_per_message_deflate": False,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "access_log": False,
    }


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "queenbee_site.settings")
    import uvicorn

    args = list(sys.argv[1:] if argv is None else argv)
    uvicorn.main.main(args=[*args, APPLICATION], default_map=defaults(), prog_name="python -m queenbee_site.uvicorn_server")


if __name__ == "__main__":
    main()
