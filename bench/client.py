"""A lean HTTP/1.1 keep-alive client, so the load generator leaves the CPU to the
server (httpx costs more per request than the bare ASGI floor does)."""

import asyncio
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    body: bytes
    first_byte: float  # seconds from sending to the first body bytes


class Connection:
    def __init__(self, url: str, token: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None

    async def post(self, path: str, payload: dict) -> Reply:
        if self.writer is None:
            await self._open()
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sent = time.perf_counter()
        self.writer.write(head + body)
        try:
            return await self._read(sent)
        except BaseException:
            self.close()
            raise

    async def _read(self, sent: float) -> Reply:
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        first = 0.0
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if not first:
                    first = time.perf_counter() - sent
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            body = b"".join(parts)
        elif length is not None:
            body = await self.reader.readexactly(length)
            first = time.perf_counter() - sent
        else:
            body = await self.reader.read()
            first = time.perf_counter() - sent
            close = True
        if close:
            self.close()
        return Reply(status, body, first)
