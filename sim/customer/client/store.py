"""Persisted tokens, one JSON file per client id (SPEC §6, seed step 5).

A token is written atomically (:func:`sim.shared.privatefiles.write_private_file`: a
temporary file, ``fsync``, ``os.replace``, ``fsync`` of the directory), so a crash leaves
either the old or the new token, never half of one.  Files are mode 0600 and the
directory 0700: they hold a credential.  Blocking I/O: the async shell calls these
through ``asyncio.to_thread``.

A stored token is reused only for the same permissions (actions and resources) it was
asked for; the validity check itself (:func:`sim.customer.client.policy.is_reusable`) is the
caller's, fed with ``now``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sim.shared.privatefiles import write_private_file
from sim.shared.protocol import TokenType

__all__ = ["StoredToken", "TokenStore"]

_FORMAT = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-@]")


@dataclass(frozen=True)
class StoredToken:
    """A token as the AppServer handed it out, ready for CONNECT."""

    token: str
    type: TokenType
    expire_ms: int
    instance_id: str
    username: str
    password: str
    actions: str  # "R", "W" or "R,W" as asked
    resources: tuple[str, ...]  # sorted, as asked

    @property
    def expire_at(self) -> float:
        return self.expire_ms / 1000.0

    def matches(self, actions: str, resources: tuple[str, ...]) -> bool:
        return self.actions == actions and self.resources == tuple(sorted(resources))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        data["resources"] = list(self.resources)
        data["format"] = _FORMAT
        return data

    @classmethod
    def from_json(cls, data: Any) -> StoredToken:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError("not a stored token of a known format")
        try:
            resources = data["resources"]
            if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
                raise ValueError("resources must be a list of strings")
            expire = data["expire_ms"]
            if not isinstance(expire, int) or isinstance(expire, bool):
                raise ValueError("expire_ms must be an integer")
            fields = ("token", "instance_id", "username", "password", "actions")
            if not all(isinstance(data[f], str) for f in fields):
                raise ValueError("token fields must be strings")
            return cls(
                token=data["token"],
                type=TokenType(data["type"]),
                expire_ms=expire,
                instance_id=data["instance_id"],
                username=data["username"],
                password=data["password"],
                actions=data["actions"],
                resources=tuple(resources),
            )
        except KeyError as exc:
            raise ValueError(f"stored token lacks {exc.args[0]!r}") from None


class TokenStore:
    """A directory of ``<client id>.json`` files."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True):
        self.directory = Path(directory)
        self.fsync = fsync

    def path_for(self, client_id: str) -> Path:
        if not client_id or len(client_id) > 256:
            raise ValueError("client id must be 1..256 characters")
        # Client ids are GID_x@@@y; anything else is escaped so no id can leave the dir.
        safe = _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", client_id)
        if safe in (".", ".."):
            safe = safe.replace(".", "%2E")
        return self.directory / f"{safe}.json"

    def load(self, client_id: str) -> StoredToken | None:
        """The stored token, or None if absent or unreadable (a corrupt file is ignored:
        the client then simply asks the AppServer)."""
        path = self.path_for(client_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return StoredToken.from_json(json.loads(raw))
        except (ValueError, TypeError):
            return None

    def save(self, client_id: str, token: StoredToken) -> None:
        data = json.dumps(token.to_json(), separators=(",", ":")).encode("utf-8")
        write_private_file(self.path_for(client_id), data, fsync=self.fsync)

    def delete(self, client_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(client_id).unlink()
