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
3. Stop reading a socket whose frames arrive faster than its consumer handles
   them, until the consumer catches up. Daphne queues every frame for the
   application without bound, so a fast sender would grow memory; pausing lets
   TCP slow it down (a genuine flood still meets the consumer's rate limit).
4. Leave request bodies to Django. Twisted parses every multipart POST into
   memory before daphne sees it (a 500 MB upload to /v1/files would be held
   whole, twice) and answers a malformed one with a bare 400 that is not
   OpenAI's envelope; Django parses uploads itself, streaming them to disk.
5. Let autobahn pretty-print for its debug lines only when they are logged: it
   formats its whole configuration on every new socket, whether debug logging
   is on or not (8% of a worker connect's CPU in py-spy).
"""

import pprint

from django.conf import settings

MAX_REASON_BYTES = 123  # RFC 6455: the close frame payload is at most 125 bytes
# How often a paused socket checks whether its consumer caught up.
BACKLOG_CHECK_SECONDS = 0.02


def install() -> None:
    try:
        from daphne.http_protocol import WebRequest
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    _leave_bodies_to_django(WebRequest)
    _lazy_autobahn_debug()
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


def _pformat_when_debugging(value, *args, **kwargs) -> str:
    """autobahn's pformat, skipped while its debug lines are not logged."""
    import txaio

    if txaio.get_global_log_level() in ("debug", "trace"):
        return pprint.pformat(value, *args, **kwargs)
    return "(autobahn debug logging is off)"


def _lazy_autobahn_debug() -> None:
    from autobahn.websocket import protocol

    if protocol.pformat is pprint.pformat:
        protocol.pformat = _pformat_when_debugging


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
        result = on_message(self, payload, isBinary)
        queue = getattr(self, "application_queue", None)
        if queue is not None and queue.qsize() >= settings.WORKER_MAX_BACKLOG and not getattr(self, "_queenbee_paused", False):
            # Backpressure, not a close: a worker streaming a large artifact
            # faster than storage takes it is slowed down by TCP, and a real
            # flood meets the consumer's frame-rate limit instead.
            self._queenbee_paused = True
            self.transport.pauseProducing()
            _resume_when_drained(self, queue)
        return result

    protocol_class.onConnect = onConnect
    protocol_class.onMessage = onMessage


def _resume_when_drained(protocol, queue) -> None:
    """Read from the socket again once its consumer has worked off half the backlog."""
    from twisted.internet import reactor

    def check():
        if protocol.state != protocol.STATE_OPEN:
            return
        if queue.qsize() > settings.WORKER_MAX_BACKLOG // 2:
            reactor.callLater(BACKLOG_CHECK_SECONDS, check)
            return
        protocol._queenbee_paused = False
        protocol.transport.resumeProducing()

    reactor.callLater(BACKLOG_CHECK_SECONDS, check)
