"""Every list setting reads alike: one comma-separated variable, parsed by the one `CommaList`."""

from __future__ import annotations

from pydantic import BeforeValidator

from cml_monitor.settings import Settings


def test_every_list_setting_is_a_comma_list() -> None:
    lists = {name: f for name, f in Settings.model_fields.items() if f.annotation == list[str]}
    assert len(lists) >= 6
    for name, info in lists.items():
        assert any(isinstance(m, BeforeValidator) for m in info.metadata), name


def test_a_comma_list_drops_blanks_and_spaces(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OIDC_ADMIN_ROLES", " ops , ,admins,")
    monkeypatch.setenv("CML_URL_BLOCKED_NETWORKS", "10.0.0.0/8, 192.168.0.0/16")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.oidc_admin_roles == ["ops", "admins"]
    assert settings.cml_url_blocked_networks == ["10.0.0.0/8", "192.168.0.0/16"]
