"""The documented dev credentials, in one place (pure; docs/stack.md, docs/authserver.md).

* the AuthServer's dev account -- AccessKeyId :data:`DEV_ACCESS_KEY`, AccessKeySecret
  :data:`DEV_SECRET_KEY`, owning instance :data:`DEV_INSTANCE` -- created in every fresh
  AuthServer data dir (SPEC §3c) and the account an AppServer applies with by default;
* the AppServer's dev client -- :data:`DEV_CLIENT_ID` / :data:`DEV_CLIENT_SECRET`, allowed
  :data:`DEV_CLIENT_RESOURCES` with :data:`DEV_CLIENT_ACTIONS` -- created by
  ``mqtt-token-sim up``.

They exist so that a loopback stack works out of the box; nothing else may rely on them.
"""

from __future__ import annotations

__all__ = [
    "DEV_ACCESS_KEY",
    "DEV_CLIENT_ACTIONS",
    "DEV_CLIENT_ID",
    "DEV_CLIENT_RESOURCES",
    "DEV_CLIENT_SECRET",
    "DEV_INSTANCE",
    "DEV_SECRET_KEY",
]

DEV_ACCESS_KEY = "dev-ak"
DEV_SECRET_KEY = "dev-sk"  # noqa: S105 - the documented dev account (SPEC §3c)
DEV_INSTANCE = "mqtt-dev"

DEV_CLIENT_ID = "GID_dev@@@dev-1"
DEV_CLIENT_SECRET = "dev-secret"  # noqa: S105 - documented, loopback dev stack only
DEV_CLIENT_RESOURCES: tuple[str, ...] = ("dev/#",)
DEV_CLIENT_ACTIONS = "R,W"
