"""Log hygiene (sim.shared.logredact): no credential reaches a log line, whichever
logger writes it and however (message, arguments, traceback); a flood of one error is
cut to a few lines and a count."""

from __future__ import annotations

import base64
import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.logredact import FloodGuard, RedactingFilter, install_log_guards, redact
from sim.shared.protocol.signing import legacy_sign
from sim.shared.protocol.tokens import TokenClaims, TokenCodec

TOKEN = TokenCodec({"k1": b"k" * 32}, "k1").encode(
    TokenClaims("tid", "dev-ak", "mqtt-dev", frozenset("RW"), ("a/+", "b/#"), 2**41, 1)
)
SIGNATURE = legacy_sign({"token": TOKEN}, "dev-sk")
BASIC = base64.b64encode(b"client-7:pa55-w0rd-secret").decode()
SECRETS = [TOKEN, SIGNATURE, BASIC, "pa55-w0rd-secret", "dev-sk-secret-value"]


def _log_through(handler_filters: bool, emit: object) -> str:
    """What a root handler writes when ``emit(logger)`` logs, with or without guards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    if handler_filters:
        install_log_guards([handler])
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        emit()  # type: ignore[operator]
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    return stream.getvalue()


def _aiohttp_parser_error() -> BaseException:
    """The exception aiohttp's own parser raises for a bad request line (its message
    quotes the line, query string included)."""
    from aiohttp.http_parser import HttpRequestParser

    class _Proto:
        transport = None

    import asyncio

    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParser(_Proto(), loop, 2**16)  # type: ignore[arg-type]
        with pytest.raises(Exception) as info:
            parser.feed_data(
                f"GET /token/query?token={TOKEN}&signature={SIGNATURE} HTTP/1.1 junk\r\n"
                f"Authorization: Basic {BASIC}\r\n\r\n".encode()
            )
    finally:
        loop.close()
    return info.value


def _records() -> None:
    """Log lines as aiohttp, asyncio, amqtt and our own code write them."""
    from amqtt.mqtt.connect import ConnectPayload

    exc = _aiohttp_parser_error()
    logging.getLogger("aiohttp.server").error("Error handling request", exc_info=exc)
    logging.getLogger("aiohttp.server").info("headers %r", {"Authorization": f"Basic {BASIC}"})
    payload = ConnectPayload(client_id="GID_a@@@d1", username="Token|dev-ak|mqtt-dev")
    payload.password = f"R|{TOKEN}|W|{TOKEN}"
    logging.getLogger("amqtt.broker").info("CONNECT %s", payload)
    logging.getLogger("amqtt.broker").info(
        "upload %s", b'{"token": "' + TOKEN.encode() + b'", "type": "RW"}'
    )
    logging.getLogger("mock_authserver").info(
        "bootstrap %s", {"accounts": [{"access_key_id": "ak", "secret": "dev-sk-secret-value"}]}
    )
    logging.getLogger("sim.x").info("apply /token/apply?signature=%s&x=1", SIGNATURE)
    logging.getLogger("sim.x").info("AccessKeySecret=dev-sk-secret-value&AccessKeyId=ak")
    try:
        raise ValueError(f"bad token {TOKEN} with password=pa55-w0rd-secret")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")


def test_no_credential_in_any_log_line_through_the_guards() -> None:
    bare = _log_through(False, _records)
    assert all(secret in bare for secret in SECRETS)  # the records do carry them...
    guarded = _log_through(True, _records)
    for secret in SECRETS:  # ...and the guarded handler writes none
        assert secret not in guarded, guarded
    assert guarded.count("[redacted]") >= len(SECRETS)
    assert "Token|dev-ak|mqtt-dev" in guarded  # usernames and ids stay readable
    assert "BadStatusLine" in guarded and "Traceback" in guarded


@given(
    key=st.sampled_from(
        [
            "signature",
            "Signature",
            "token",
            "Token",
            "tokenData",
            "password",
            "secret",
            "AccessKeySecret",
            "secret_key",
        ]
    ),
    sep=st.sampled_from(["=", ": ", '": "', "': '", '=\\"', " = "]),
    value=st.text("abcdefXYZ0123456789+/=%-_.~", min_size=6, max_size=60),
    before=st.text(" /?&{('\"", max_size=3),
    after=st.sampled_from(["", "&x=1", '", "y": 1}', "' HTTP/1.1", " ", ")", ",a=b"]),
)
def test_the_value_of_a_credential_key_never_survives(key, sep, value, before, after):
    text = f"{before}{key}{sep}{value}{after}"
    assert value not in redact(text).replace(key, "")


@pytest.mark.parametrize(
    "text",
    [
        "SignatureNonce=8f2c&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0",
        "GET /admin/tokens/AbCdEf012345 200",
        'File "/work/x/.venv/lib/python3.11/site-packages/aiohttp/web_protocol.py", line 446',
        "username=Token|dev-ak|mqtt-dev client_id=GID_a@@@d1",
        "sha256 5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592",
    ],
)
def test_what_is_not_a_credential_stays_readable(text):
    assert redact(text) == text


def test_the_filter_keeps_records_usable_and_runs_once():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s n=%d", ("abc", 3), None)
    f = RedactingFilter()
    assert f.filter(record) and f.filter(record)
    assert record.getMessage() == "token=[redacted] n=3"


def test_flood_guard_lets_a_few_through_and_counts_the_rest():
    now = [0.0]
    guard = FloodGuard(burst=10, window_s=10.0, monotonic=lambda: now[0])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_log_guards([handler], flood=guard)
    logger = logging.getLogger("asyncio.flood-test")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def accept_failed() -> None:  # one call site, as asyncio's accept() error is
        logger.error("socket.accept() out of system resource")

    try:
        for _ in range(10_000):
            accept_failed()
        logger.info("an INFO line is never cut")
        now[0] = 10.0
        accept_failed()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 12
    assert guard.suppressed == 9_990
    assert lines[-1].endswith("[9990 more like this suppressed in 10 s]")


def test_install_is_idempotent_and_shares_one_flood_guard():
    a, b = logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    guard = install_log_guards([a, b])
    assert install_log_guards([a, b]) is guard
    for h in (a, b):
        assert [type(f) for f in h.filters] == [FloodGuard, RedactingFilter]
