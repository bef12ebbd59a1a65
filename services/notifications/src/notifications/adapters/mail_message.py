"""The RFC 5322 text of an outgoing mail, written directly rather than through
``email.message.EmailMessage``.

Every mail is one plain-text part from one configured sender to one address, so the text is a
fixed set of header lines and a body. Building and flattening an ``EmailMessage`` (default or
SMTP policy) re-parses each header through ``email.headerregistry`` and
``email._header_value_parser``: 6.4 % and more of notifications' CPU at 30 orders/s (py-spy,
issue 11). Building, flattening and reading the envelope back out of an ``EmailMessage`` took
1.2 ms of CPU per order mail, ``MIMEText`` (compat32) 0.39 ms, writing the lines 15 µs (timeit,
this workspace's 2-core machine).

Header injection: a header value is written only if it cannot end its line. An address must be
one ``local@domain`` with no whitespace (CR and LF included), controls or ``<>()[],;:"\\``; a
subject with CR or LF is refused, as ``EmailMessage`` refused it; any other subject that is not
short printable ASCII becomes RFC 2047 encoded words, which hold no line break.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64encode
from email.utils import formataddr, formatdate, parseaddr
from uuid import UUID

# Deliberately loose, like the gateway's check: the one real test of an address is a mail that
# arrives. Non-ASCII is allowed (sent with SMTPUTF8, RFC 6531/6532, as aiosmtplib did before).
_ADDRESS = re.compile(r'[^\s\x00-\x1f\x7f<>()\[\]\\,;:"@]+@[^\s\x00-\x1f\x7f<>()\[\]\\,;:"@]+')
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# "Subject: " plus this many characters stays inside the 78 a line should not exceed (RFC 5322
# 2.1.1); a longer subject is folded as encoded words.
_PLAIN_SUBJECT_MAX = 69
_LINE_MAX = 998  # RFC 5322 2.1.1, without the CRLF
# 39 bytes are 52 in base64: "Subject: =?utf-8?b?" + 52 + "?=" is 73, inside the 76 a line with
# encoded words may take (RFC 2047 2).
_WORD_BYTES = 39


class MailWriter:
    """Plain-text mails (UTF-8) from one sender; the sender is checked once, here."""

    def __init__(self, sender: str) -> None:
        if _has_line_break(sender) or not sender.isprintable():
            raise ValueError(f"mail sender {sender!r} holds a line break or a control character")
        name, address = parseaddr(sender)
        if not (address.isascii() and _ADDRESS.fullmatch(address)):
            raise ValueError(f"mail sender {sender!r} has no usable ASCII address")
        self.envelope_from = address
        # A display name with non-ASCII or specials is encoded or quoted by formataddr, once.
        self._from_line = f"From: {formataddr((name, address), charset='utf-8')}\r\n"
        # Message-ID is the notification's id: a mail sent twice (delivery is at least once)
        # carries one Message-ID, by which a receiving system can drop the second.
        self._id_domain = address.rpartition("@")[2]

    def write(self, *, id: UUID, to: str, subject: str, body: str) -> bytes:
        """The message; ``ValueError`` for an address or a subject that could not be written
        safely (the mail is then recorded as failed, as it was with ``EmailMessage``)."""
        if not _ADDRESS.fullmatch(to):
            raise ValueError(f"recipient {to!r} is not a single address")
        encoding, text = _body(body)
        return "".join(
            (
                self._from_line,
                f"To: {to}\r\n",
                f"Subject: {_subject(subject)}\r\n",
                f"Date: {formatdate(usegmt=True)}\r\n",
                f"Message-ID: <{id}@{self._id_domain}>\r\n",
                "MIME-Version: 1.0\r\n",
                'Content-Type: text/plain; charset="utf-8"\r\n',
                f"Content-Transfer-Encoding: {encoding}\r\n",
                "\r\n",
                text,
            )
        ).encode()


def _has_line_break(text: str) -> bool:
    return "\r" in text or "\n" in text


def _subject(subject: str) -> str:
    if _has_line_break(subject):
        raise ValueError(f"subject {subject!r} holds a line break")
    if (
        len(subject) <= _PLAIN_SUBJECT_MAX
        and subject.isascii()
        and subject.isprintable()
        and "=?" not in subject  # would read as an encoded word
    ):
        return subject
    return _encoded_words(subject)


def _encoded_words(text: str) -> str:
    """RFC 2047 B-encoded words, each of whole characters and on a line of its own. Not
    ``email.header.Header``: it splits the text at U+2028 and other line separators and drops
    them."""
    words, start, size = [], 0, 0
    for i, char in enumerate(text):
        width = len(char.encode())
        if size + width > _WORD_BYTES:
            words.append(text[start:i])
            start, size = i, 0
        size += width
    words.append(text[start:])
    return "\r\n ".join(f"=?utf-8?b?{b64encode(word.encode()).decode('ascii')}?=" for word in words)


def _body(body: str) -> tuple[str, str]:
    """The transfer encoding and the body's text, lines ending in CRLF: 7bit when that is
    allowed (ASCII, no NUL, lines within 998), else quoted-printable (needs no 8BITMIME)."""
    lines = _LINE_BREAK.split(body)
    text = "\r\n".join(lines) + "\r\n"
    if body.isascii() and "\x00" not in body and max(map(len, lines)) <= _LINE_MAX:
        return "7bit", text
    return "quoted-printable", binascii.b2a_qp(text.encode()).decode("ascii")
