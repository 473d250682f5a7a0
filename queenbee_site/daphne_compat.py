"""Let daphne send the close reason of an ASGI `websocket.close`.

Daphne 4.2 drops the `reason` key the ASGI spec allows, so a refused worker would
see only a close code. Workers deserve the readable reason ("bad signature: …").
Remove this once daphne forwards reasons itself.
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
        if message.get("type") == "websocket.close" and message.get("reason") and self.state != self.STATE_CONNECTING:
            reason = message["reason"].encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore")
            self.sendClose(code=message.get("code") or 1000, reason=reason)
            return
        return original(self, message)

    WebSocketProtocol.handle_reply = handle_reply
    WebSocketProtocol._queenbee_close_reason = True
