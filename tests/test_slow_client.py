"""The 4008 "slow client" close reaches a client whose socket is backed up, even when the
keepalive ping timeout is short (real uvicorn, real `websockets` client)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.exceptions import ConnectionClosed

from tests.factories import msg
from tests.test_realtime import Frame, Node, node, open_ws, phone_jid, token
from wasync.hub import CLOSE_LAGGING


async def test_a_backed_up_client_gets_4008_not_a_ping_timeout(db_url: str) -> None:
    """A client stops reading; its queue overflows; it stays silent for several ping
    timeouts, then reads: it gets its frames and the 4008 close with `since=<last id>`.
    uvicorn's close used to wait for the socket to drain, so the keepalive (1 s here) dropped
    the client with 1011 first."""
    async with node(db_url, queue_frames=4, ping_s=1.0) as n:
        tok, s, body = token("acme", "u1"), n.sid(), "x" * 256_000
        slow = await open_ws(
            n, tok, max_queue=1, max_size=2**20, compression=None, sock=_small_socket(n)
        )
        (client,) = n.hub.clients()
        for i in range(400):
            await n.pipeline.ingest([msg(s, f"BIG{i}", phone_jid(1), body=body)], source="t")
            await asyncio.sleep(0.01)
            if client.close_code == CLOSE_LAGGING:
                break
        else:
            raise AssertionError("the slow client never overflowed")
        await asyncio.sleep(4)  # four ping intervals without a pong
        frames: list[Frame] = []
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(30):
                while True:
                    frames.append(json.loads(await slow.recv()))
    assert info.value.rcvd is not None, "dropped without a close frame"
    assert info.value.rcvd.code == CLOSE_LAGGING
    last = frames[-1]["id"] if frames else 0
    assert info.value.rcvd.reason.endswith(f"since={last}")


def _small_socket(n: Node) -> socket.socket:
    """A client socket with a small receive buffer (set before connecting, so the window is
    small too): a client that stops reading backs its socket up after a few frames."""
    host, port = n.base_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock
