"""The rollout-worker protocol's framing: one message = a JSON header and, optionally, raw bytes.

A frame is ``<8-byte big-endian header length><header JSON><payload bytes>``; the header's
``"payload"`` field gives the payload's length (0: none). JSON rather than pickle on purpose: a
worker may sit on another host, and unpickling a peer's bytes would run whatever it sent.
Completions travel as JSON lists (a Python float survives a JSON round trip exactly); weights
do not travel here at all but over the weight-transfer group (`r1lab.rollout.transfer`).
"""
from __future__ import annotations

import json
import socket
import struct

PROTOCOL_VERSION = 1  # bumped when a message changes; a worker of another version is refused at hello
_LEN = struct.Struct(">Q")
MAX_HEADER_BYTES = 1 << 30


def parse_address(address: str, field: str = "rollout.servers") -> tuple[str, int]:
    """``host:port`` -> (host, port), or a ValueError naming ``field`` and the form it takes."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{field}: {address!r} is not host:port (e.g. 127.0.0.1:5601)")
    return host, int(port)


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (or died) before a whole frame arrived."""


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionClosed(f"connection closed with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send_message(sock: socket.socket, header: dict, payload: bytes = b"") -> int:
    """Send one frame; the number of bytes written."""
    body = json.dumps({**header, "payload": len(payload)}).encode()
    sock.sendall(_LEN.pack(len(body)) + body + payload)
    return _LEN.size + len(body) + len(payload)


def recv_message(sock: socket.socket) -> tuple[dict, bytes]:
    """Receive one frame: (header, payload). Raises `ConnectionClosed` on EOF."""
    (size,) = _LEN.unpack(_recv_exactly(sock, _LEN.size))
    if size > MAX_HEADER_BYTES:
        raise ConnectionError(f"frame header of {size} bytes: the peer does not speak the r1lab rollout protocol")
    header = json.loads(_recv_exactly(sock, size))
    payload = _recv_exactly(sock, header.get("payload", 0)) if header.get("payload") else b""
    return header, payload


def completion_json(c) -> dict:
    """A `Completion` as the protocol carries it."""
    return {"token_ids": c.token_ids, "text": c.text, "stopped": c.stopped, "logprobs": c.logprobs,
            "tool_mask": c.tool_mask, "tool_stats": c.tool_stats}


def completion_from_json(d: dict):
    from r1lab.rollout.sampler import Completion

    return Completion(token_ids=d["token_ids"], text=d["text"], stopped=d["stopped"], logprobs=d["logprobs"],
                      tool_mask=d["tool_mask"], tool_stats=d["tool_stats"])
