"""Errors of the shared wire formats.

    WireFormatError (ValueError)
    ├── InvalidTopic          a topic or topic filter breaks MQTT's rules
    ├── InvalidCredentials    a CONNECT username/password/client id is malformed
    ├── InvalidPayload        a ``$SYS`` payload is malformed
    ├── InvalidToken          a token is not genuine (malformed, unknown key, bad MAC)
    └── FeedDocumentError     an AuthServer bootstrap or feed document is malformed

Each message says what is wrong, so shells can show it to the sender as it is.
"""

from __future__ import annotations

__all__ = [
    "FeedDocumentError",
    "InvalidCredentials",
    "InvalidPayload",
    "InvalidToken",
    "InvalidTopic",
    "WireFormatError",
]


class WireFormatError(ValueError):
    """Base of every wire-format error."""


class InvalidTopic(WireFormatError):
    pass


class InvalidCredentials(WireFormatError):
    pass


class InvalidPayload(WireFormatError):
    pass


class InvalidToken(WireFormatError):
    """The token codec's one error: the AuthServer answers it as code 1 (forged), the
    broker as notice/refusal code 1."""


class FeedDocumentError(WireFormatError):
    """A bootstrap or feed document (:mod:`sim.shared.protocol.feed`) breaks its schema;
    the message names the field, e.g. ``bootstrap: accounts[2].instances must be a list
    of strings``."""
