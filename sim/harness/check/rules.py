"""The checks of ``check appserver`` and the rules they come from (pure).

The seed (the provider's description of token authentication) binds an AppServer with
three "Application server behavior constraints" and the seven steps of its procedure;
each check quotes the line it enforces.  Where the seed gives no figure (the rate limits
of the token API), SPEC §3b gives the provider's documented one.
"""

from __future__ import annotations

from .model import CheckSpec

__all__ = ["CHECKS", "CHECK_NAMES", "SEED_RULES", "spec"]

SEED = "seed: Application server behavior constraints"
SEED_STEPS = "seed: the procedure of token authentication"
SEED_CLIENT = "seed: Client behavior constraints"

#: The seed's three AppServer rules, verbatim.
RULE_IDENTITY = (
    "The application server must authenticate the MQTT client to prevent the MQTT client "
    "from applying for a token by using a forged identity."
)
RULE_RELATIONSHIP = (
    "The application server must manage the token-client relationship to prevent the same "
    "MQTT client from calling a token repeatedly."
)
RULE_RECOVERY = (
    "The application server must implement local disaster recovery to prevent service "
    "congestion due to temporary failed access to the authorization server."
)
SEED_RULES = (RULE_IDENTITY, RULE_RELATIONSHIP, RULE_RECOVERY)

STEP_3 = (
    "The application server verifies whether the MQTT client is authorized to operate the "
    "topics. If the MQTT client is authorized, the application server applies for the "
    "resource-related tokens from the authorization server."
)
STEP_5_RESTART = (
    "When the MQTT client is restarted with the same permissions for access, the "
    "application server returns the cached tokens to the MQTT client. This avoids repeated "
    "token application."
)
STEP_5_RECOVERY = (
    "If the authorization server cannot process the client token application request due "
    "to an error, the application server returns the previously applied token for local "
    "disaster recovery."
)
STEP_6 = (
    "The MQTT client sets token parameters based on the specifications to connect to the "
    "MQTT broker. The MQTT client can send and receive messages after being authenticated "
    "by the MQTT broker."
)
CLIENT_VALIDITY = (
    "The MQTT client must know the validity period of the used token and ensure that it is "
    "within the validity period."
)

CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "forged-identity",
        "a forged identity gets no token",
        RULE_IDENTITY,
        SEED,
        "a known client id with a wrong secret, an unknown client id and an empty secret "
        "are each refused (4xx), and cause no upstream apply",
    ),
    CheckSpec(
        "beyond-permissions",
        "a client asking beyond its permissions is refused",
        STEP_3,
        SEED_STEPS,
        "a client asking for topics outside its resources (the adapter's forbidden "
        "filters, another client's topics, the whole instance) is refused (4xx) and "
        "causes no upstream apply",
    ),
    CheckSpec(
        "repeat-uses-cache",
        "repeated asks reuse the token",
        RULE_RELATIONSHIP,
        SEED,
        "after its first token, a client asking again gets a token with enough life left "
        "and causes no new upstream apply",
    ),
    CheckSpec(
        "concurrent-single-flight",
        "concurrent identical asks make one apply",
        RULE_RELATIONSHIP,
        SEED,
        "N identical asks at once (a client retrying, a fleet restarting) for a token not "
        "yet cached cause exactly one upstream apply, and all get that token",
    ),
    CheckSpec(
        "restart-keeps-cache",
        "cached tokens survive an AppServer restart",
        STEP_5_RESTART,
        SEED_STEPS,
        "after the AppServer restarts (--restart-cmd), clients asking again get their "
        "cached tokens with no upstream apply: the token-client relationship is kept, "
        "not only in memory",
        needs=("repeat-uses-cache",),
    ),
    CheckSpec(
        "tokens-connect",
        "every token connects with the permissions asked",
        STEP_6,
        SEED_STEPS,
        "each token the earlier checks received (and one more) is the AuthServer's, for "
        "exactly the actions and resources asked, and a real MQTT client connects with it, "
        "may subscribe and publish inside its resources and is refused outside them",
    ),
    CheckSpec(
        "states-expiry",
        "the answer states the token's expiry",
        CLIENT_VALIDITY,
        SEED_CLIENT,
        "a client can only know its token's validity period if the AppServer tells it: "
        "the expiry in the answer matches the AuthServer's record of the token",
    ),
    CheckSpec(
        "outage-cached-clients",
        "during an AuthServer outage cached clients still get their token",
        RULE_RECOVERY,
        SEED,
        "while every AuthServer call fails, clients holding a cached token get it, "
        "answered promptly",
    ),
    CheckSpec(
        "outage-new-clients",
        "during an outage new clients get a clear error, and the AppServer stays up",
        RULE_RECOVERY,
        SEED,
        "while every AuthServer call fails, a client with no cached token gets a prompt "
        "5xx or 429 (a temporary error it can retry: not a hang, a reset or a 4xx that "
        "tells it to give up), and the AppServer keeps answering",
    ),
    CheckSpec(
        "recovery-drain",
        "after recovery the backlog drains without a burst past the rate limits",
        RULE_RECOVERY + " (Rate limits: SPEC §3b, the provider's documented limits.)",
        SEED + "; SPEC §3b",
        "clients refused during an outage retry together once it ends: each gets its "
        "token, the AuthServer never answers with its throttling error (its rate limits, "
        "per account), and the outage itself saw no more upstream calls than asks (no "
        "retry storm)",
    ),
    CheckSpec(
        "outage-stale-fallback",
        "during an outage a token due for refresh is still served while valid",
        STEP_5_RECOVERY,
        SEED_STEPS,
        "a cached token close to its expiry (the AppServer would refresh it) is still "
        "returned while the AuthServer fails, as long as it is valid; needs a clock the "
        "check can move",
    ),
)

CHECK_NAMES = tuple(c.name for c in CHECKS)


def spec(name: str) -> CheckSpec:
    for c in CHECKS:
        if c.name == name:
            return c
    raise KeyError(name)
