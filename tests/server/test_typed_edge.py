"""Requests of the wrong shape stop at the edge with a 4xx that says what is wrong, and leave no
error (or traceback) in the log: bodies and forms are parsed into models before any use case runs.

Read positions and nested webhook bodies have their own tests beside the files API, the MCP
resources and the receivers.
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import anyio
import pytest

from tests.conftest import LiveTendril, Tendril
from tests.support.browser_http import BrowserLike, csrf_of
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

MIB = 1 << 20


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("provider", [["slack"], {"name": "slack"}, 7, None, True])
async def test_a_webhook_provider_that_is_not_a_string_is_a_400_naming_the_field(
    tendril: Tendril, provider: object, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    async with tendril.raw() as http:
        response = await http.post(
            f"/api/v1/connections/{started.connection.id}/webhooks",
            json={"provider": provider, "secrets": {"signing_secret": "s"}},
            headers={"X-Api-Key": owner.api_key},
        )
        listed = await http.get("/api/v1/webhook-endpoints", headers={"X-Api-Key": owner.api_key})
    assert_error(response, 400, "BAD_REQUEST", "provider must be a string")
    assert listed.json()["endpoints"] == []
    assert failures_logged(caplog) == []


MALFORMED_FORMS = {
    "garbage multipart": (b"this is not multipart at all", "multipart/form-data; boundary=xyz", 400),
    "multipart without a boundary": (b"--x\r\n\r\n", "multipart/form-data", 400),
    "a file in the form": (
        b'--b\r\nContent-Disposition: form-data; name="api_key"; filename="k.txt"\r\n\r\nkey\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
        400,
    ),
    "a field over 1 MiB": (b"api_key=" + b"k" * MIB, "application/x-www-form-urlencoded", 413),
    "a multipart field over 1 MiB": (
        b'--b\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n' + b"k" * MIB + b"\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        413,
    ),
    "not UTF-8": (b"api_key=%FF\xff\xfe", "application/x-www-form-urlencoded", 400),
}


@pytest.mark.parametrize("case", MALFORMED_FORMS)
async def test_a_malformed_or_oversized_sign_in_form_is_a_4xx_page_and_no_error_in_the_log(
    tendril: Tendril, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, content_type, status = MALFORMED_FORMS[case]
    async with tendril.raw() as http:
        response = await http.post("/signin", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in response.headers
    assert failures_logged(caplog) == []


@pytest.mark.parametrize("case", MALFORMED_FORMS)
async def test_signed_in_forms_refuse_malformed_bodies_the_same_way_and_change_nothing(
    tendril: Tendril, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, content_type, status = MALFORMED_FORMS[case]
    owner = await tendril.new_owner()
    started = await tendril.client(owner.api_key).create_connection("telegram")
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        csrf_of((await browser.get("/dashboard")).text)  # a live session with a form token
        for path in (f"/connect/{started.connection.id}", "/dashboard/connections"):
            response = await browser.tendril.post(path, content=body, headers={"Content-Type": content_type})
            assert response.status_code == status, (path, response.text)
    connections = await tendril.client(owner.api_key).connections()
    assert [(c.id, c.status) for c in connections] == [(started.connection.id, "pending")]
    assert failures_logged(caplog) == []


@pytest.mark.parametrize(
    "path", ["/api/v1/connections", "/signin", "/connectors", "/api/v1/connectors/webhooks/github/nope"]
)
async def test_a_client_that_leaves_mid_body_is_not_logged_as_a_failure(
    live_tendril: LiveTendril, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    live = live_tendril
    parts = urlsplit(live.url)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Api-Key: {live.admin.api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode() + b'{"connectorSlug": "sl'
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(request)
    # The server notices the disconnect when it next reads the body; give it that moment.
    with anyio.fail_after(5):
        while not [
            r for r in caplog.records if "went away" in r.getMessage() or "disconnect" in r.getMessage()
        ]:
            if path.startswith("/api/v1/connectors/webhooks"):
                break  # the receiver answers on its own terms; it logs nothing at all
            await anyio.sleep(0.05)
    await anyio.sleep(0.2)
    assert failures_logged(caplog) == []
