"""Controllers over HTTPS with their own self-signed certificate, and an account that is not an
administrator: what the monitor reads, and what it says when it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME, ControllerFleet
from cml_fleet_sim.serving import ThreadedServer
from cml_fleet_sim.tls import SelfSignedCertificate, self_signed
from cml_monitor.cml import CmlControllerClient
from cml_monitor.domain import CmlStatus
from cml_monitor.domain.cml import ControllerReading
from cml_monitor.settings import SettingsError, load_settings

USER, USER_PASSWORD = "operator", "operator-pw"


@pytest.fixture(scope="module")
def https() -> Iterator[tuple[ControllerFleet, str, SelfSignedCertificate]]:
    certificate = self_signed("127.0.0.1")
    fleet = ControllerFleet()
    fleet.add_user(USER, USER_PASSWORD)
    fleet.add("w1", running_labs=2, stopped_labs=1)
    server = ThreadedServer(fleet.app, tls=certificate).start()
    assert server.url.startswith("https://127.0.0.1:")
    yield fleet, fleet.url_for(server.url, "w1"), certificate
    server.stop()


async def _read(url: str, **options: object) -> tuple[bool, dict[str, object], tuple[str, ...]]:
    username = str(options.pop("username", USERNAME))
    password = str(options.pop("password", PASSWORD))
    client = CmlControllerClient(username=username, password=password, timeout=3, **options)  # type: ignore[arg-type]
    try:
        reading = await client.read_controller(url, licensing=True, activity=True)
    finally:
        await client.close()
    return reading.reachable, reading.values, reading.errors


async def test_an_untrusted_certificate_is_reported_with_the_setting_to_use(
    https: tuple[ControllerFleet, str, SelfSignedCertificate],
) -> None:
    _fleet, url, _certificate = https
    reachable, _values, errors = await _read(url)
    assert not reachable
    assert errors and all("TLS certificate not trusted" in e and "CML_CA_BUNDLE" in e for e in errors)


async def test_the_controllers_ca_bundle_makes_it_trusted(
    https: tuple[ControllerFleet, str, SelfSignedCertificate],
) -> None:
    _fleet, url, certificate = https
    reachable, values, errors = await _read(url, ca_bundle=str(certificate.certfile))
    assert reachable and errors == ()
    assert values["labs_started"] == 2 and values["license_registration"] == "COMPLETED"


async def test_no_verification_still_reads_over_https(
    https: tuple[ControllerFleet, str, SelfSignedCertificate],
) -> None:
    _fleet, url, _certificate = https
    reachable, values, errors = await _read(url, verify_tls=False)
    assert reachable and errors == () and values["version"]


async def test_a_non_administrator_reads_what_it_may_and_is_told_what_it_lacks(
    https: tuple[ControllerFleet, str, SelfSignedCertificate],
) -> None:
    _fleet, url, certificate = https
    options = {"ca_bundle": str(certificate.certfile), "username": USER, "password": USER_PASSWORD}
    status = CmlStatus()
    seen = []
    for _ in range(2):  # the same answer twice: the same status, nothing flaps
        reachable, values, errors = await _read(url, **options)
        status = status.apply(ControllerReading(reachable, values, errors), datetime.now(UTC))
        seen.append((status.reachable, status.healthy, status.license_registration, status.errors))
    assert seen[0] == seen[1]
    assert status.reachable is True and status.healthy is True and status.cpu_percent is not None
    assert status.license_registration is None  # unknown, not a licence problem
    assert "licensing: needs an administrator account for licensing (HTTP 403)" in status.errors
    assert "telemetry/events: needs an administrator account for telemetry/events (HTTP 403)" in status.errors
    assert status.labs_total == 0  # a non-administrator sees only its own labs
    # Refused, the licensing and activity checks wait their interval rather than every cycle.
    now = datetime.now(UTC)
    assert not status.licensing_due(now, 3600) and not status.activity_due(now, 600)


def test_a_ca_bundle_that_is_not_a_pem_file_names_the_setting(tmp_path: object) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, cml_ca_bundle="/nonexistent/ca.pem")
    assert "CML_CA_BUNDLE" in str(caught.value)
    certificate = self_signed("127.0.0.1")
    assert load_settings(_env_file=None, cml_ca_bundle=str(certificate.certfile)).cml_ca_bundle
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, cml_ca_bundle=str(certificate.keyfile))
    assert "CML_CA_BUNDLE" in str(caught.value)
