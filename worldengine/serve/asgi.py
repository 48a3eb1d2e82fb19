"""A Starlette (ASGI) websocket seen through the small aiohttp-like surface `drive_socket` uses.

`worldengine.serve.socket.drive_socket` was written against aiohttp's WebSocketResponse (the ComfyUI
route). Ray Serve's ingress replicas speak ASGI (FastAPI/Starlette), so this adapter gives it the same
five things: `closed`, `send_bytes`, `send_json`, `close(code, message)` and `async for msg in ws`
yielding messages with aiohttp's `WSMsgType` and `.data`. It also enforces the hard message size that
aiohttp enforces on the ComfyUI route (`HARD_MAX_MESSAGE`: the socket closes with 1009).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import WSMsgType

from worldengine.serve.socket import HARD_MAX_MESSAGE

CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013   # RFC 6455 "Try Again Later": the server is full


@dataclass(frozen=True)
class Message:
    type: WSMsgType
    data: object


class AsgiSocket:
    """Wraps an accepted `starlette.websockets.WebSocket`. Sending on a closed socket raises
    ConnectionResetError, as aiohttp does; receiving ends when the client disconnects."""

    def __init__(self, websocket):
        self.websocket = websocket
        self.closed = False

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def send_json(self, value) -> None:
        await self._send({"type": "websocket.send", "text": json.dumps(value)})

    async def _send(self, message: dict) -> None:
        if self.closed:
            raise ConnectionResetError("the live socket is closed")
        try:
            await self.websocket.send(message)
        except Exception as err:  # noqa: BLE001 - any transport failure means the client is gone
            self.closed = True
            raise ConnectionResetError(f"the live socket is closed: {err}") from None

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.websocket.close(code, reason=message.decode("utf-8", "replace")[:120])
        except Exception:  # noqa: BLE001, S110 - already gone: nothing left to close
            pass

    def __aiter__(self):
        return self._messages()

    async def _messages(self):
        while not self.closed:
            try:
                message = await self.websocket.receive()
            except Exception:  # noqa: BLE001 - a receive after the disconnect: the socket is over
                break
            if message["type"] == "websocket.disconnect":
                break
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode("utf-8", "replace")) if text is not None else len(data or b"")
            if size > HARD_MAX_MESSAGE:
                await self.close(CLOSE_TOO_BIG, b"message too large")
                break
            if text is not None:
                yield Message(WSMsgType.TEXT, text)
            else:
                yield Message(WSMsgType.BINARY, data or b"")
        self.closed = True
