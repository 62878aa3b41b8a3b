"""The broker's one error tree.

    MockBrokerError
    ├── BrokerConfigError       a flag, file or environment value is invalid
    └── FeedError               the AuthServer's bootstrap or feed answered nonsense
        └── FeedReset           the feed position is unknown: re-read the bootstrap

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
