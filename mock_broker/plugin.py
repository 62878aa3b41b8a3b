"""The amqtt plugin: an adapter from amqtt's plugin API to :mod:`mock_broker.decision`.

Usable on any amqtt 0.12.1 broker (``plugins: {"mock_broker.plugin.TokenAuthPlugin":
{...}}``): ``authenticate()`` answers CONNECTs, ``topic_filtering()`` answers
PUBLISH / SUBSCRIBE / RECEIVE.  The token broker (:mod:`mock_broker.broker`) calls the
same object directly for the richer answers (CONNACK code, notice code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from sim.shared.clock import SystemClock

from .decision import (
    Grant,
    Refusal,
    decide_connect,
    decide_publish,
    decide_subscribe,
    may_receive,
)

__all__ = ["GRANT_KEY", "REFUSAL_KEY", "TokenAuthPlugin", "grant_of"]

GRANT_KEY = "mqtt_token_sim.grant"
REFUSAL_KEY = "mqtt_token_sim.refusal"


def grant_of(session: Session | None) -> Grant | None:
    if session is None:
        return None
    grant = session.attributes.get(GRANT_KEY)
    return grant if isinstance(grant, Grant) else None


class TokenAuthPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """Token and signature authentication plus token ACLs (SPEC §4)."""

    @dataclass
    class Config:
        authority: Any = None
        """The :class:`~mock_broker.authority.TokenAuthority` (keys, accounts, revoked
        set) that tokens are checked against; required when ``enabled``."""
        clock: Any = None
        """The :class:`sim.shared.clock.Clock` whose ``now_ms`` decides expiry (system clock if
        unset)."""
        enabled: bool = True
        """``False``: every CONNECT is accepted with full access (no token checks)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        config = self.config
        if config.enabled and config.authority is None:
            raise ValueError("TokenAuthPlugin needs an authority when enabled")
        self.authority = config.authority
        self.clock = config.clock if config.clock is not None else SystemClock()
        self.enabled = bool(config.enabled)
        # password (the full token text) -> (username, client id, authority generation,
        # valid until ms, grant).  Keyed by the password alone, so a hit costs no key
        # tuple; the username and client id must match too (a password presented by
        # another client is a miss, decided afresh, and replaces the entry).
        self._decided: dict[Any, tuple[Any, str, int, int, Grant]] = {}

    def check_connect(self, session: Session) -> Grant | Refusal:
        client_id = session.client_id or ""
        if not self.enabled:
            return Grant("Open", "", "", client_id)
        now_ms = self.clock.now_ms()
        authority = self.authority
        username, password = session.username, session.password
        # A device reconnecting with the same credentials gets the same answer while
        # nothing changed: no keys, accounts or revocations (the generation) and no
        # token expired.  Only grants are remembered; refusals are decided afresh.
        known = self._decided.get(password)
        if (
            known is not None
            and known[0] == username
            and known[1] == client_id
            and known[2] == authority.generation
            and now_ms < known[3]
        ):
            return known[4]
        generation = authority.generation
        result = decide_connect(username, password, client_id, authority, now_ms)
        if isinstance(result, Grant):
            until = min((c.expire_ms for c in result.tokens.values()), default=2**62)
            if len(self._decided) >= 16_384:
                self._decided.clear()
            self._decided[password] = (username, client_id, generation, until, result)
        return result

    async def authenticate(self, *, session: Session) -> bool | None:
        result = self.check_connect(session)
        if isinstance(result, Refusal):
            session.attributes[REFUSAL_KEY] = result
            return False
        session.attributes[GRANT_KEY] = result
        return True

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        grant = grant_of(session)
        if grant is None or topic is None:
            return False
        if action == Action.PUBLISH:
            return decide_publish(grant, topic) is None
        if action == Action.SUBSCRIBE:
            return decide_subscribe(grant, topic) is None
        if action == Action.RECEIVE:
            return may_receive(grant, topic)
        return False
