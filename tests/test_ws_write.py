"""`write_text`, the direct frame write the server offers to `/ws` (real uvicorn, real
`websockets` clients): it writes while the socket takes the bytes, and hands the frame back
(False, nothing written) once the transport is paused or the connection is gone, so the
caller sends it the ASGI way and no frame is lost or reordered."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from wasync.api.server import WRITE_TEXT, serve

Write = Callable[[str], bool]


class App:
    """One WebSocket at a time: accepts it, hands over its `write_text`, reports the end."""

    def __init__(self) -> None:
        self.write: asyncio.Future[Write] = asyncio.get_running_loop().create_future()
        self.send: Any = None
        self.gone = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        self.send = send
        self.write.set_result(scope["extensions"][WRITE_TEXT]["write"])
        while (await receive())["type"] != "websocket.disconnect":
            pass
        self.gone.set()


async def _client(url: str, **kwargs: Any) -> ClientConnection:
    return await connect(url.replace("http://", "ws://"), **kwargs)


async def test_a_frame_written_directly_arrives_and_a_gone_peer_is_refused() -> None:
    app = App()
    async with serve(app) as url:
        ws = await _client(url)  # permessage-deflate offered, as browsers do
        write = await asyncio.wait_for(app.write, 10)
        assert write("olá, tudo bem?") is True
        assert write("segunda") is True
        async with asyncio.timeout(10):
            assert await ws.recv() == "olá, tudo bem?"
            assert await ws.recv() == "segunda"
        await ws.close()
        await asyncio.wait_for(app.gone.wait(), 10)
        assert write("depois") is False  # nothing written to a closed connection


async def test_a_backed_up_socket_hands_the_frame_back_and_order_holds() -> None:
    """A client that stops reading: `write_text` writes until the transport pauses, then
    says False; the rest go through the ASGI send (which waits); the client, reading again,
    gets every frame once, in order."""
    app = App()
    async with serve(app) as url:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        ws = await _client(url, sock=sock, max_queue=1, max_size=2**20, compression=None)
        write = await asyncio.wait_for(app.write, 10)
        body = "x" * 60_000
        direct = 0
        for i in range(2_000):
            if not write(f"{i:05d}{body}"):
                break
            direct += 1
        else:
            raise AssertionError("the transport never paused for a client that reads nothing")
        assert direct > 0
        pending = [f"{i:05d}{body}" for i in range(direct, direct + 3)]
        sending = asyncio.ensure_future(_send_all(app.send, pending))
        await asyncio.sleep(0.2)
        assert not sending.done()  # the ASGI path waits for the paused transport
        got = []
        async with asyncio.timeout(30):
            for _ in range(direct + len(pending)):
                got.append(int((await ws.recv())[:5]))
        await sending
        assert got == list(range(direct + len(pending)))
        await ws.close()


async def _send_all(send: Any, texts: list[str]) -> None:
    for text in texts:
        await send({"type": "websocket.send", "text": text})
