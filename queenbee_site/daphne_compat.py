"""Let daphne send the close code and reason of an ASGI `websocket.close` as given.

Daphne 4.2 drops the `reason` key the ASGI spec allows, so a refused worker would
see only a close code; workers deserve the readable reason ("bad signature: …").
And autobahn's public sendClose refuses the standard codes other than 1000, such
as 1001 "going away" (shutdown) and 1012 "service restart", which daphne then
turns into an abnormal close. Remove this once daphne does both itself.
"""

MAX_REASON_BYTES = 123  # RFC 6455: the close frame payload is at most 125 bytes


def install() -> None:
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
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
