"""An asyncio TCP fault proxy: sits in front of Kafka or PostgreSQL and, on command, adds
latency, resets every connection, or swallows traffic (blackhole). Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    PASS = "pass"
    LATENCY = "latency"
    BLACKHOLE = "blackhole"  # connections stay open, nothing gets through either way


class FaultProxy:
    def __init__(self, *, listen_port: int, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.listen_port, self.target_port = host, listen_port, target_port
        self.mode = Mode.PASS
        self.latency = 0.0
        self._server: asyncio.Server | None = None
        self._connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.resets = 0
        self.faulted = 0  # chunks delayed or held by a fault mode: proof a window met traffic

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.listen_port)

    async def stop(self) -> None:
        self.reset_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def heal(self) -> None:
        self.mode, self.latency = Mode.PASS, 0.0

    def add_latency(self, seconds: float) -> None:
        self.mode, self.latency = Mode.LATENCY, seconds

    def blackhole(self) -> None:
        self.mode = Mode.BLACKHOLE

    def reset_all(self) -> int:
        """Abort every open connection (clients see ECONNRESET); new ones are accepted."""
        count = 0
        for client, upstream in list(self._connections):
            for writer in (client, upstream):
                transport = writer.transport
                if not transport.is_closing():
                    transport.abort()
            count += 1
        self._connections.clear()
        self.resets += count
        return count

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        pair = (client_writer, up_writer)
        self._connections.add(pair)
        try:
            await asyncio.gather(self._pipe(client_reader, up_writer), self._pipe(up_reader, client_writer))
        finally:
            self._connections.discard(pair)
            for writer in pair:
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.mode is not Mode.PASS:
                    self.faulted += 1
                while self.mode is Mode.BLACKHOLE:
                    await asyncio.sleep(0.05)
                if self.mode is Mode.LATENCY and self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        # One direction ended: end the other too.
        writer.transport.abort()
