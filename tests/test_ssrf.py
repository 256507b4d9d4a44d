"""Server-side request forgery: the CML password never goes where it must not.

Forbidden URLs are registered on stopped instances, so that even a broken guard would make the
monitor contact nothing (a stopped worker's controller is never read). Cross-host rules use a
second loopback address (127.0.0.2); nothing here sends a packet beyond loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cml_fleet_sim.serving import ThreadedServer
from cml_monitor.cml import CmlControllerClient
from cml_monitor.cml.guard import BlockedAddress, UrlGuard, parse_networks
from cml_monitor.settings import Settings

from .conftest import Moto

# The shipped default list, so that a network dropped from it fails here.
DEFAULT_BLOCKED = ",".join(Settings.model_fields["cml_url_blocked_networks"].default)

FORBIDDEN = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://2852039166/",  # 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/",  # and in hex
    "http://localhost:6379/",  # a name that resolves to loopback
    "http://user:pw@127.0.0.1:5432/",
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "https://[fd00:ec2::254]/",  # the metadata service over IPv6
    "http://[::]/",  # unspecified: connecting to it reaches the local host
    "http://[::]:8443/",
    "http://0.0.0.0:8443/",
    "http://169.254.169.254./",  # trailing dot
    "http://127.0.0.1./",
    "http://localhost./",  # a name with a trailing dot (glibc then skips /etc/hosts)
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::a9fe:a9fe]/",
    "http://[::ffff:7f00:1]/",  # mapped, in hex
    "http://[0:0:0:0:0:ffff:169.254.169.254]/",
    "http://[::ffff:0:a9fe:a9fe]/",  # IPv4-translated (SIIT)
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64, well-known prefix
    "http://[64:ff9b::127.0.0.1]/",
    "http://[64:ff9b:1:a9fe:a9:fe00::]/",  # NAT64 local-use prefix, IPv4 after a /48
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://[2001:0:a9fe:a9fe::1]/",  # Teredo, server address
    "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo, client (obfuscated) address
    "http://100.100.100.200/",  # another cloud's metadata service
    "http://127\u30020\u30020\u30021/",  # ideographic full stops: aiohttp's URL library folds them
    "http://\uff11\uff12\uff17.0.0.1/",  # full-width digits, folded too
]


class Capture:
    """A server that records every request it gets (it must get none)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, await request.body()))
        return JSONResponse("token")


@pytest.fixture
def stopped_instances(moto: Moto) -> Iterator[list[str]]:
    ids = moto.run_instances(2)  # one the forbidden URL is refused for, one it is patched onto
    moto.ec2().stop_instances(InstanceIds=ids)
    yield ids


@pytest.mark.parametrize("url", FORBIDDEN)
async def test_a_forbidden_cml_url_is_refused_at_registration_and_patch(
    api_factory: Any, stopped_instances: list[str], url: str
) -> None:
    api = await api_factory(cml_url_blocked_networks=DEFAULT_BLOCKED)
    body = {"name": "w", "aws_region": "us-east-1", "aws_instance_id": stopped_instances[0], "cml_url": url}
    refused = await api.client.post("/api/workers", json=body)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"][0]
    assert detail["loc"][-1] == "cml_url" and "not allowed" in detail["msg"]
    assert (await api.client.get("/api/workers")).json()["total"] == 0

    # A literal (documentation) address: nothing is resolved, and the stopped worker is never read.
    allowed = {**body, "aws_instance_id": stopped_instances[1], "cml_url": "https://192.0.2.10/"}
    worker = (await api.client.post("/api/workers", json=allowed)).json()
    patched = await api.client.patch(f"/api/workers/{worker['id']}", json={"cml_url": url})
    assert patched.status_code == 422 and patched.json()["detail"][0]["loc"][-1] == "cml_url"
    assert (await api.client.get(f"/api/workers/{worker['id']}")).json()["cml_url"] == "https://192.0.2.10/"


def test_the_guard_reads_every_spelling_of_an_address() -> None:
    guard = UrlGuard(parse_networks(DEFAULT_BLOCKED))
    for url in FORBIDDEN:
        if "localhost" in url:
            continue  # a name: checked when it resolves
        with pytest.raises(ValueError):
            guard.check_url_syntax(url)
    guard.check_url_syntax("https://10.1.2.3/")
    guard.check_url_syntax("https://cml.example.com:8443/")
    guard.check_url_syntax("https://[2001:db8::10]/")
    guard.check_url_syntax("https://[64:ff9b::a0a:a0a]/")  # NAT64 to 10.10.10.10: allowed
    guard.check_url_syntax("https://[2002:a0a:a0a::1]/")  # 6to4 from 10.10.10.10: allowed


def test_the_guard_remembers_only_what_it_allowed() -> None:
    """Allowed URLs are kept (the same few every cycle); a refusal is refused again every time."""
    guard = UrlGuard(parse_networks(DEFAULT_BLOCKED))
    for _ in range(2):
        assert guard.check_url_syntax("https://[2001:db8::10]/api/v0/labs") == "2001:db8::10"
        for url in ("https://169.254.169.254/latest", "https://2130706433/", "https://u:p@192.0.2.1/"):
            with pytest.raises(ValueError):
                guard.check_url_syntax(url)


def test_unspecified_addresses_are_refused_even_with_an_empty_list() -> None:
    """`0.0.0.0` and `::` reach the local host: no configuration makes them a controller."""
    guard = UrlGuard(())
    for url in (
        "http://0.0.0.0/",
        "http://[::]/",
        "http://0/",
        "http://[::ffff:0.0.0.0]/",
        "http://0.1.2.3/",
    ):
        with pytest.raises(BlockedAddress):
            guard.check_url_syntax(url)
    guard.check_url_syntax("http://127.0.0.1/")  # nothing else is refused by an empty list


async def test_a_name_that_resolves_into_a_blocked_network_is_never_connected_to() -> None:
    """DNS may change after registration: the address actually used is checked at connect time."""
    capture = Capture()
    server = ThreadedServer(capture.app).start()  # on 127.0.0.1
    client = CmlControllerClient(
        username="admin", password="s3cret", timeout=2, blocked_networks=parse_networks(DEFAULT_BLOCKED)
    )
    try:
        for url in (f"http://localhost:{server.port}", server.url, f"http://2130706433:{server.port}"):
            reading = await client.read_controller(url, licensing=True)
            assert not reading.reachable and reading.errors
            assert all("not contacted" in e for e in reading.errors), reading.errors
    finally:
        await client.close()
        server.stop()
    assert capture.requests == []


@pytest.mark.parametrize(
    ("listen", "spelling", "blocked"),
    [
        ("::1", "http://[::]:{port}", DEFAULT_BLOCKED),  # the case: `::` reached `::1`
        ("127.0.0.1", "http://0.0.0.0:{port}", ""),  # refused even with an empty list
        ("127.0.0.1", "http://[::ffff:127.0.0.1]:{port}", DEFAULT_BLOCKED),
        ("127.0.0.1", "http://127\u30020\u30020\u30021:{port}", DEFAULT_BLOCKED),
        ("127.0.0.1", "http://\uff11\uff12\uff17.0.0.1:{port}", DEFAULT_BLOCKED),
        ("127.0.0.1", "http://127.0.0.1.:{port}", DEFAULT_BLOCKED),
    ],
)
async def test_every_spelling_of_the_local_host_is_never_connected_to(
    listen: str, spelling: str, blocked: str
) -> None:
    capture = Capture()
    server = ThreadedServer(capture.app, host=listen).start()
    client = CmlControllerClient(
        username="admin", password="s3cret", timeout=2, blocked_networks=parse_networks(blocked)
    )
    try:
        reading = await client.read_controller(spelling.format(port=server.port), licensing=True)
        assert not reading.reachable and reading.errors
        assert all("not contacted" in e for e in reading.errors), reading.errors
    finally:
        await client.close()
        server.stop()
    assert capture.requests == []


@pytest.mark.parametrize("target_host", ["127.0.0.2", "127.0.0.3"])
async def test_a_controller_that_redirects_never_gets_the_password_sent_elsewhere(target_host: str) -> None:
    """127.0.0.1 allowed; 127.0.0.2 another allowed host, 127.0.0.3 a blocked one: neither sees a thing."""
    capture = Capture()
    elsewhere = ThreadedServer(capture.app, host=target_host).start()

    async def redirect(request: Request) -> Response:
        return RedirectResponse(f"{elsewhere.url}{request.url.path}", status_code=307)

    controller = ThreadedServer(
        Starlette(routes=[Route("/{path:path}", redirect, methods=["GET", "POST"])])
    ).start()
    client = CmlControllerClient(
        username="admin",
        password="s3cret",
        timeout=2,
        blocked_networks=parse_networks("169.254.0.0/16,127.0.0.3/32"),
    )
    try:
        reading = await client.read_controller(controller.url, licensing=True)
        assert not reading.reachable
        assert all("not followed" in e for e in reading.errors), reading.errors
    finally:
        await client.close()
        controller.stop()
        elsewhere.stop()
    assert capture.requests == []  # the password went nowhere else
