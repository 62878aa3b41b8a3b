"""The OpenAPI 3.1 description of the AppServer's HTTP API, served at ``/openapi.json``.

A test checks that every route of the app is described here and nothing else is.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_FILTERS = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 1024},
    "minItems": 1,
    "maxItems": 100,
    "description": "MQTT topic filters (`+` and `#` allowed, no `,`)",
}
_ACTIONS = {"type": "string", "enum": ["R", "W", "R,W"]}
_CLIENT_ID = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_\\-.@]{1,128}$"},
}
_JSON = "application/json"
_DROPPED = "cached tokens taken away by this change (never served again)"
_QUEUED = "of those, queued for upstream revocation (drained in the background)"


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    ref = "#/components/schemas/"
    account_out = {"content": {_JSON: {"schema": {"$ref": ref + "Account"}}}}
    deleted = {"content": {_JSON: {"schema": {"$ref": ref + "Deleted"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mqtt-token-sim reference AppServer",
            "version": version,
            "description": (
                "Authenticates clients against local accounts, checks their topic "
                "grants and hands out MQTT tokens applied for at the AuthServer, "
                "cached per (account, instance, actions, resources)."
            ),
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "retryAfter": {"type": "integer"},
                    },
                },
                "TokenRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["resources", "actions"],
                    "properties": {"resources": _FILTERS, "actions": _ACTIONS},
                },
                "TokenResponse": {
                    "type": "object",
                    "required": [
                        "token",
                        "type",
                        "expireTime",
                        "instanceId",
                        "username",
                        "password",
                        "stale",
                    ],
                    "properties": {
                        "token": {"type": "string"},
                        "type": {"type": "string", "enum": ["R", "W", "RW"]},
                        "expireTime": {"type": "integer", "description": "ms since epoch"},
                        "instanceId": {"type": "string"},
                        "username": {
                            "type": "string",
                            "description": "CONNECT username Token|<AccessKeyId>|<InstanceId>",
                        },
                        "password": {
                            "type": "string",
                            "description": "CONNECT password TYPE|token",
                        },
                        "stale": {
                            "type": "boolean",
                            "description": "served from the cache while the AuthServer fails",
                        },
                    },
                },
                "Grant": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["resources", "actions"],
                    "properties": {"resources": _FILTERS, "actions": _ACTIONS},
                },
                "AccountPut": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "secret is required when creating",
                    "properties": {
                        "secret": {"type": "string", "minLength": 1, "maxLength": 1024},
                        "grants": {"type": "array", "items": {"$ref": ref + "Grant"}},
                        "enabled": {"type": "boolean"},
                    },
                },
                "Account": {
                    "type": "object",
                    "properties": {
                        "client_id": {"type": "string"},
                        "grants": {"type": "array", "items": {"$ref": ref + "Grant"}},
                        "enabled": {"type": "boolean"},
                        "tokens": {"type": "integer"},
                        "dropped": {"type": "integer", "description": _DROPPED},
                        "queued": {"type": "integer", "description": _QUEUED},
                    },
                },
                "Deleted": {
                    "type": "object",
                    "properties": {
                        "client_id": {"type": "string"},
                        "dropped": {"type": "integer", "description": _DROPPED},
                        "queued": {"type": "integer", "description": _QUEUED},
                    },
                },
            },
        },
        "paths": {
            "/v1/tokens": {
                "post": {
                    "summary": "Get a token for topics the account is granted",
                    "security": [{"basic": []}],
                    "requestBody": {
                        "required": True,
                        "content": {_JSON: {"schema": {"$ref": ref + "TokenRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "a token (cached, new, or stale during an outage)",
                            "content": {_JSON: {"schema": {"$ref": ref + "TokenResponse"}}},
                        },
                        "400": _error("malformed body"),
                        "401": _error("missing or wrong credentials"),
                        "403": _error("account disabled, or a filter outside its grants"),
                        "413": _error("body too large"),
                        "503": _error(
                            "AuthServer failing and no valid cached token; see Retry-After"
                        ),
                    },
                }
            },
            "/admin/accounts/{client_id}": {
                "parameters": [_CLIENT_ID],
                "put": {
                    "summary": (
                        'Create or update an account. Disable: {"enabled": false} (the '
                        "account stays; its tokens are taken away and revoked). Tokens that "
                        "narrowed grants no longer cover are taken away too."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {_JSON: {"schema": {"$ref": ref + "AccountPut"}}},
                    },
                    "responses": {
                        "200": {"description": "updated", **account_out},
                        "201": {"description": "created", **account_out},
                        "400": _error("invalid account"),
                    },
                },
                "get": {
                    "summary": "An account (never its secret)",
                    "responses": {
                        "200": {"description": "the account", **account_out},
                        "404": _error("no such account"),
                    },
                },
                "delete": {
                    "summary": (
                        "Delete an account: secret and grants are gone (the id answers 401, "
                        "and may be created again); its tokens are taken away and revoked"
                    ),
                    "responses": {
                        "200": {"description": "deleted", **deleted},
                        "404": _error("no such account"),
                    },
                },
            },
            "/admin/accounts": {
                "get": {
                    "summary": "All accounts",
                    "responses": {"200": {"description": '{"accounts": [Account]}'}},
                }
            },
            "/admin/accounts:bulk": {
                "post": {
                    "summary": (
                        "Create or update many accounts at once: all valid or none, committed "
                        "in one transaction with the tokens they take away"
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["accounts"],
                                    "properties": {
                                        "accounts": {
                                            "type": "array",
                                            "items": {
                                                "allOf": [
                                                    {"$ref": ref + "AccountPut"},
                                                    {
                                                        "required": ["client_id"],
                                                        "properties": {
                                                            "client_id": {"type": "string"}
                                                        },
                                                    },
                                                ]
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "{imported, created, updated, dropped, queued}"},
                        "400": _error("an invalid entry (named by index)"),
                    },
                }
            },
            "/admin/health": {
                "get": {
                    "summary": "Liveness and breaker state",
                    "responses": {"200": {"description": '{"status": "ok", ...}'}},
                }
            },
            "/admin/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Prometheus text format"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }
