"""The text of an outgoing mail, without a server: headers, encodings, and what is refused."""

from email import message_from_bytes, policy
from uuid import uuid4

import pytest

from notifications.adapters.mail_message import MailWriter

WRITER = MailWriter("Emporium <orders@emporium.local>")


def written(*, to: str = "ada@example.com", subject: str = "Your order is confirmed", body: str = "Thanks."):
    raw = WRITER.write(id=uuid4(), to=to, subject=subject, body=body)
    return raw, message_from_bytes(raw, policy=policy.default)


@pytest.mark.parametrize(
    "to",
    [
        "eve@example.com\r\nBcc: mallory@example.com",
        "eve@example.com\nBcc: mallory@example.com",
        "eve@example.com\rBcc: mallory@example.com",
        "eve@example.com, mallory@example.com",
        "Eve <eve@example.com>",
        "eve @example.com",
        "eve@example.com\u2028Bcc: mallory@example.com",
        "eve@example.com\x00",
        "eve",
        "",
    ],
)
def test_a_recipient_that_is_not_one_plain_address_is_refused(to):
    with pytest.raises(ValueError):
        written(to=to)


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: mallory@example.com", "Hi\nBcc: x@y.z", "Hi\rBcc: x@y.z"])
def test_a_subject_with_a_line_break_is_refused(subject):
    with pytest.raises(ValueError):
        written(subject=subject)


@pytest.mark.parametrize(
    "sender",
    ["Emporium <orders@emporium.local>\r\nBcc: mallory@example.com", "nobody", "Zoë <zoë@example.com>"],
)
def test_a_sender_that_cannot_be_written_fails_when_the_writer_is_built(sender):
    with pytest.raises(ValueError):
        MailWriter(sender)


@pytest.mark.parametrize(
    "subject",
    [
        "Ihre Bestellung ist bestätigt ✓",
        "Bestellung " * 20,  # too long for one line
        "a line\u2028separator and a\ttab",  # email.header.Header would drop the separator
        "looks like =?utf-8?q?an_encoded_word?=",
        "🎉" * 40,
    ],
)
def test_a_subject_that_is_not_short_printable_ascii_is_encoded_and_reads_back_unchanged(subject):
    raw, mail = written(subject=subject)
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.isascii() and b"=?utf-8?b?" in head
    assert all(len(line) <= 76 for line in head.split(b"\r\n") if line.startswith((b"Subject:", b" ")))
    assert str(mail["Subject"]) == subject and not mail["Subject"].defects


def test_a_short_ascii_subject_and_body_are_written_as_they_are():
    raw, mail = written(subject="Your order 1234abcd is confirmed", body="Thank you!\nOrder 1234abcd.")
    assert b"\r\nSubject: Your order 1234abcd is confirmed\r\n" in raw
    assert raw.endswith(b"\r\n\r\nThank you!\r\nOrder 1234abcd.\r\n")
    assert mail["Content-Transfer-Encoding"] == "7bit"


def test_a_non_ascii_body_is_quoted_printable_and_reads_back_unchanged():
    body = "Grüße aus dem Lager.\n" + "x" * 1200  # and one line longer than SMTP allows
    raw, mail = written(body=body)
    assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert mail["Content-Transfer-Encoding"] == "quoted-printable"
    assert mail.get_content().replace("\r\n", "\n") == body + "\n"
