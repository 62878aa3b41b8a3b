"""The token rules for a stock amqtt broker: an amqtt plugin over a
:class:`~mock_broker.token_policy.TokenPolicy`.

A thin adapter: ``authenticate()`` asks the policy's :meth:`~TokenPolicy.decide`,
``topic_filtering()`` its publish, subscribe and receive rules, so stock amqtt and the
hardened broker (which calls the same policy object directly) decide alike.  This is how
the hardening tests run stock amqtt under the token rules:
``{"plugins": {PLUGIN_PATH: {"policy": policy}}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from .decision import Refusal, SessionAccess
from .token_policy import TokenPolicy

__all__ = ["ACCESS_KEY", "PLUGIN_PATH", "TokenAuthPlugin"]

PLUGIN_PATH = "mock_broker.plugin.TokenAuthPlugin"
ACCESS_KEY = "mqtt_token_sim.access"  # where the session's SessionAccess is kept


class TokenAuthPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """Token and signature authentication plus token ACLs (SPEC §4)."""

    @dataclass
    class Config:
        policy: Any = None
        """The :class:`~mock_broker.token_policy.TokenPolicy` whose rules apply."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        if not isinstance(self.config.policy, TokenPolicy):
            raise ValueError("TokenAuthPlugin needs a TokenPolicy as 'policy'")
        self.policy: TokenPolicy = self.config.policy

    async def authenticate(self, *, session: Session) -> bool | None:
        result = self.policy.decide(session.username, session.password, session.client_id or "")
        if isinstance(result, Refusal):
            return False
        session.attributes[ACCESS_KEY] = result
        return True

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        access = session.attributes.get(ACCESS_KEY) if session is not None else None
        if not isinstance(access, SessionAccess) or topic is None:
            return False
        if action == Action.PUBLISH:
            return self.policy.publish_refusal(access, topic) is None
        if action == Action.SUBSCRIBE:
            return self.policy.subscribe_refusal(access, topic) is None
        if action == Action.RECEIVE:
            return self.policy.may_receive(access, topic)
        return False
