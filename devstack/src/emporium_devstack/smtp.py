"""A tiny SMTP sink (RFC 5321 subset) on asyncio that stores every message as a ``.eml`` file.

Supported verbs: EHLO/HELO, MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET, NOOP, QUIT,
plus VRFY (252) and HELP. No AUTH, no STARTTLS: it is for local development and tests only.

Run it as a process: ``python -m emporium_devstack.smtp --maildir D --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import time
import uuid
from pathlib import Path

MAX_LINE = 64 * 1024
MAX_MESSAGE = 32 * 1024 * 1024
_counter = itertools.count()


class SmtpSink:
    """Accept any mail on host:port and write each message into `maildir` as ``<time>-<id>.eml``.

    Each file starts with ``X-Sink-Mail-From`` / ``X-Sink-Rcpt-To`` header lines (the SMTP
    envelope), followed by the message exactly as received (after dot-unstuffing).
    """

    def __init__(self, *, maildir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.maildir = Path(maildir)
        self.host = host
        self._requested_port = port or 0
        self.port: int | None = port
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.received = 0
        self.connections = 0

    async def start(self) -> None:
        if self._server is not None:
            return
        self.maildir.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_server(
            self._handle, self.host, self._requested_port, limit=MAX_LINE, reuse_address=True
        )
        sock: socket.socket = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        await server.wait_closed()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def messages(self) -> list[Path]:
        """Stored messages, oldest first."""
        return sorted(self.maildir.glob("*.eml"))

    # protocol

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self.connections += 1
        try:
            await self._session(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hostname = socket.gethostname() or "localhost"

        async def reply(line: str) -> None:
            writer.write(line.encode("ascii", "replace") + b"\r\n")
            await writer.drain()

        await reply(f"220 {hostname} Emporium SMTP sink ready")
        mail_from: str | None = None
        rcpt_to: list[str] = []
        greeted = False
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                await reply("500 5.5.2 Line too long")
                return
            except asyncio.IncompleteReadError:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            arg = arg.strip()
            if verb == "EHLO":
                if not arg:
                    await reply("501 5.5.4 Syntax: EHLO hostname")
                    continue
                greeted, mail_from, rcpt_to = True, None, []
                writer.write(f"250-{hostname} greets {arg}\r\n".encode("ascii", "replace"))
                writer.write(f"250-SIZE {MAX_MESSAGE}\r\n".encode())
                writer.write(b"250-8BITMIME\r\n")
                writer.write(b"250-SMTPUTF8\r\n")
                await reply("250 HELP")
            elif verb == "HELO":
                if not arg:
                    await reply("501 5.5.4 Syntax: HELO hostname")
                    continue
                greeted, mail_from, rcpt_to = True, None, []
                await reply(f"250 {hostname}")
            elif verb == "MAIL":
                if not greeted:
                    await reply("503 5.5.1 Error: send HELO/EHLO first")
                elif mail_from is not None:
                    await reply("503 5.5.1 Error: nested MAIL command")
                elif not arg.upper().startswith("FROM:"):
                    await reply("501 5.5.4 Syntax: MAIL FROM:<address>")
                else:
                    mail_from = _address(arg[5:])
                    rcpt_to = []
                    await reply("250 2.1.0 OK")
            elif verb == "RCPT":
                if mail_from is None:
                    await reply("503 5.5.1 Error: need MAIL command")
                elif not arg.upper().startswith("TO:") or not _address(arg[3:]):
                    await reply("501 5.5.4 Syntax: RCPT TO:<address>")
                else:
                    rcpt_to.append(_address(arg[3:]))
                    await reply("250 2.1.5 OK")
            elif verb == "DATA":
                if arg:
                    await reply("501 5.5.4 Syntax: DATA")
                elif mail_from is None or not rcpt_to:
                    await reply("503 5.5.1 Error: need RCPT command")
                else:
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    body = await self._read_data(reader)
                    if body is None:
                        await reply("552 5.3.4 Message too big")
                    else:
                        path = self._store(mail_from, rcpt_to, body)
                        await reply(f"250 2.0.0 OK: queued as {path.stem}")
                    mail_from, rcpt_to = None, []
            elif verb == "RSET":
                mail_from, rcpt_to = None, []
                await reply("250 2.0.0 OK")
            elif verb == "NOOP":
                await reply("250 2.0.0 OK")
            elif verb == "VRFY":
                await reply("252 2.0.0 Cannot VRFY user, but will accept message")
            elif verb == "HELP":
                await reply("214 EHLO HELO MAIL RCPT DATA RSET NOOP QUIT")
            elif verb == "QUIT":
                await reply("221 2.0.0 Bye")
                return
            elif not verb:
                await reply("500 5.5.2 Error: bad syntax")
            else:
                await reply(f"502 5.5.1 Error: command {verb[:20]} not implemented")

    async def _read_data(self, reader: asyncio.StreamReader) -> bytes | None:
        """Read until the lone-dot line; undo dot-stuffing. None if the message is too big."""
        lines: list[bytes] = []
        size = 0
        too_big = False
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                # Overlong line: keep reading it in chunks (count it, drop it if too big).
                raw = await reader.readexactly(exc.consumed)
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b"."):
                raw = raw[1:]
            size += len(raw)
            if size > MAX_MESSAGE:
                too_big = True
                lines.clear()
            if not too_big:
                lines.append(raw)
        return None if too_big else b"".join(lines)

    def _store(self, mail_from: str, rcpt_to: list[str], body: bytes) -> Path:
        self.received += 1
        name = f"{time.time_ns()}-{os.getpid()}-{next(_counter):06d}-{uuid.uuid4().hex[:8]}"
        header = (
            f"X-Sink-Mail-From: <{mail_from}>\r\nX-Sink-Rcpt-To: {', '.join(f'<{r}>' for r in rcpt_to)}\r\n"
        )
        tmp = self.maildir / f".{name}.tmp"
        final = self.maildir / f"{name}.eml"
        tmp.write_bytes(header.encode("utf-8") + body)
        tmp.rename(final)  # atomic: readers never see a half-written .eml
        return final


def _address(text: str) -> str:
    """The address inside <...> (parameters such as SIZE=... after it are ignored)."""
    text = text.strip()
    if text.startswith("<"):
        end = text.find(">")
        return text[1:end] if end != -1 else text[1:]
    return text.split(" ", 1)[0]


async def _amain(maildir: Path, host: str, port: int) -> None:
    sink = SmtpSink(maildir=maildir, host=host, port=port)
    await sink.start()
    print(f"smtp sink listening on {sink.host}:{sink.port}, writing to {sink.maildir}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sink.stop()
    print(f"smtp sink stopped ({sink.received} messages received)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emporium_devstack.smtp", description=__doc__)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    args = parser.parse_args(argv)
    asyncio.run(_amain(args.maildir, args.host, args.port))


if __name__ == "__main__":
    main()
