"""Daphne adjustments for worker sockets.

1. Send the close code and reason of an ASGI `websocket.close` as given.
   Daphne 4.2 drops the `reason` key the ASGI spec allows, so a refused worker
   would see only a close code; workers deserve the readable reason ("bad
   signature: …"). And autobahn's public sendClose refuses the standard codes
   other than 1000, such as 1001 "going away" (shutdown) and 1012 "service
   restart", which daphne then turns into an abnormal close. Remove this once
   daphne does both itself.
2. Take the largest worker message from WORKER_MAX_FRAME_BYTES. Daphne's own
   default (1 MiB, `--websocket-max-message-size`) would drop a worker sending
   one image reply; autobahn closes oversized messages with 1009 and a reason.
3. Close a socket whose frames arrive faster than its consumer handles them.
   Daphne queues every frame for the application without bound, so a flood would
   grow memory before any rate limit in the consumer saw it.
4. Leave request bodies to Django. Twisted parses every multipart POST into
   memory before daphne sees it (a 500 MB upload to /v1/files would be held
   whole, twice) and answers a malformed one with a bare 400 that is not
   OpenAI's envelope; Django parses uploads itself, streaming them to disk.
"""

from django.conf import settings

MAX_REASON_BYTES = 123  # RFC 6455: the close frame payload is at most 125 bytes
CLOSE_RATE_LIMITED = 4029  # as workers/limits.py


def install() -> None:
    try:
        from daphne.http_protocol import WebRequest
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    _leave_bodies_to_django(WebRequest)
    if getattr(WebSocketProtocol, "_queenbee_close_reason", False):
        return
    original = WebSocketProtocol.handle_reply

    def handle_reply(self, message):
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            reason = (message.get("reason") or "").encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore")
            self.sendCloseFrame(code=message.get("code") or 1000, reasonUtf8=reason.encode("utf-8") or None, isReply=False)
            return
        return original(self, message)

    WebSocketProtocol.handle_reply = handle_reply
    WebSocketProtocol._queenbee_close_reason = True
    _install_limits(WebSocketProtocol)


def _leave_bodies_to_django(request_class) -> None:
    if getattr(request_class, "_queenbee_raw_bodies", False):
        return
    init = request_class.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False  # twisted.web.http.Request's switch

    request_class.__init__ = __init__
    request_class._queenbee_raw_bodies = True


def _install_limits(protocol_class) -> None:
    on_connect, on_message = protocol_class.onConnect, protocol_class.onMessage

    def onConnect(self, request):
        # autobahn copied the factory's limits onto this socket when it opened;
        # frames are only read after the handshake, so setting them here holds.
        self.maxMessagePayloadSize = self.maxFramePayloadSize = settings.WORKER_MAX_FRAME_BYTES
        # On a protocol failure (invalid UTF-8, a message over the limit) send the
        # close frame with its reason instead of dropping the TCP connection.
        self.failByDrop = False
        return on_connect(self, request)

    def onMessage(self, payload, isBinary):
        if getattr(self, "_queenbee_flooded", False):
            return  # closing: what the flood still sends is not handled
        queue = getattr(self, "application_queue", None)
        if queue is not None and queue.qsize() >= settings.WORKER_MAX_BACKLOG:
            self._queenbee_flooded = True
            _drop_frames(queue)
            self.sendClose(code=CLOSE_RATE_LIMITED, reason="too many frames: sent faster than they can be handled")
            return
        return on_message(self, payload, isBinary)

    protocol_class.onConnect = onConnect
    protocol_class.onMessage = onMessage


def _drop_frames(queue) -> None:
    """Forget the frames still queued for a socket being closed as a flood.

    Handling them could take longer than daphne waits for the application after
    the close (application_close_timeout, 10 s); daphne would then kill the
    consumer before its disconnect handler ran, leaving its registry row behind.
    """
    kept = [m for m in (queue.get_nowait() for _ in range(queue.qsize())) if m.get("type") != "websocket.receive"]
    for message in kept:
        queue.put_nowait(message)
