"""A tiny Redis client over a socket: PING, INFO, AUTH and SELECT, with timeouts.

Only what the health probe needs, so no Redis library joins the lock file. Replies are parsed as
data (RESP2: +simple, -error, :integer, $bulk, *array) with caps on every size; nothing read is
ever run. Errors name the host and port, never the URL (it may hold the password).
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

MAX_BULK = 4 * 1024 * 1024  # INFO is a few KB; anything larger is not a Redis we should trust
MAX_LINE = 64 * 1024
MAX_ITEMS = 1024


class RedisError(Exception):
    """The server answered -ERR, the reply was malformed, or the connection failed."""


class RespClient:
    def __init__(self, url: SecretStr, timeout_s: float) -> None:
        parts = urlsplit(url.get_secret_value())
        if parts.scheme not in ("redis", "rediss"):
            raise RedisError("not a redis:// or rediss:// URL")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.where = f"{self.host}:{self.port}"
        self._user = unquote(parts.username) if parts.username else None
        self._password = SecretStr(unquote(parts.password)) if parts.password else None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise RedisError(f"{self.where}: the database in the URL must be a number")
        self._db = int(path) if path else 0
        self._tls = parts.scheme == "rediss"
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> RespClient:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            if self._tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        except OSError as err:
            raise RedisError(f"{self.where}: {err.strerror or type(err).__name__}") from None
        sock.settimeout(self.timeout_s)
        self._sock = sock
        if self._password is not None:
            secret = self._password.get_secret_value()
            self.command(*(("AUTH", self._user, secret) if self._user else ("AUTH", secret)))
        if self._db:
            self.command("SELECT", str(self._db))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def command(self, *words: str) -> object:
        if self._sock is None:
            raise RedisError(f"{self.where}: not connected")
        encoded = [w.encode() for w in words]
        frame = b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded)
        try:
            self._sock.sendall(frame)
            return self._reply()
        except (OSError, ValueError) as err:
            what = "timed out" if isinstance(err, TimeoutError) else str(err) or type(err).__name__
            raise RedisError(f"{self.where}: {words[0]}: {what}") from None

    def _reply(self, depth: int = 0) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":  # AUTH's error never echoes the password: Redis says WRONGPASS or NOAUTH
            raise RedisError(f"{self.where}: {rest.decode(errors='replace')[:200]}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            if size > MAX_BULK:
                raise ValueError(f"reply of {size} bytes is too large")
            return self._exactly(size + 2)[:-2].decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            if count > MAX_ITEMS or depth > 2:
                raise ValueError("reply too large or too deep")
            return [self._reply(depth + 1) for _ in range(max(count, 0))]
        raise ValueError(f"unexpected reply type {kind!r}")

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise ValueError("reply line too long")
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed")
        self._buffer += chunk


def parse_info(text: str) -> dict[str, str]:
    """INFO's `key:value` lines; comments (# Server) and anything else skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def number(fields: dict[str, str], key: str) -> float | None:
    try:
        return float(fields[key])
    except (KeyError, ValueError):
        return None
