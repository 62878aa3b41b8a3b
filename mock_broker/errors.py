"""The broker's one error tree.

    MockBrokerError
    ├── BrokerConfigError       a flag, file or environment value is invalid
    └── FeedError               the AuthServer's bootstrap or feed did not answer a
        │                       document (HTTP error, not JSON)
        └── FeedReset           the feed position is unknown: re-read the bootstrap

A malformed document raises the shared
:class:`~sim.shared.protocol.errors.FeedDocumentError` where it is read.

MQTT clients never see these: a refused CONNECT is a CONNACK code, a violation is a
``$SYS/tokenInvalidNotice`` (SPEC §4).  They surface to whoever runs the broker.
"""

from __future__ import annotations

__all__ = ["BrokerConfigError", "FeedError", "FeedReset", "MockBrokerError"]


class MockBrokerError(Exception):
    """Base of every error of :mod:`mock_broker`."""


class BrokerConfigError(MockBrokerError, ValueError):
    pass


class FeedError(MockBrokerError):
    pass


class FeedReset(FeedError):
    pass
