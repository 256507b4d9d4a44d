import pytest

from cml_monitor.settings import SettingsError, load_settings


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings(_env_file=None)
    assert settings.worker_monitoring_enabled is True
    assert settings.worker_metrics_poll_interval == 300
    assert settings.worker_cpu_threshold == 90.0
    assert settings.worker_memory_threshold == 90.0
    assert settings.database_url == "sqlite+aiosqlite:///./data/cml-monitor.db"
    assert settings.background_job_store_url == ""
    assert (settings.cml_monitor_host, settings.cml_monitor_port) == ("127.0.0.1", 8080)
    assert settings.api_tokens == []
    assert settings.worker_notification_alertmanager_urls == []
    assert settings.worker_notification_group_wait == 10.0
    assert (settings.cml_monitor_public_url, settings.worker_runbook_base_url) == ("", "docs/runbooks")


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_METRICS_POLL_INTERVAL", "15")
    monkeypatch.setenv("WORKER_NOTIFICATION_WEBHOOKS", "http://a.example/x, https://b.example/y")
    monkeypatch.setenv("API_TOKENS", "admin:s3cret,viewer:look")
    monkeypatch.setenv("BACKGROUND_JOB_STORE_URL", "redis://127.0.0.1:6379/1")
    settings = load_settings(_env_file=None)
    assert settings.worker_metrics_poll_interval == 15
    assert settings.worker_notification_webhooks == ["http://a.example/x", "https://b.example/y"]
    assert settings.api_token_roles == {"s3cret": "admin", "look": "viewer"}


def test_operator_stack_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_NOTIFICATION_ALERTMANAGER_URLS", "http://am-1:9093/, http://am-2:9093")
    monkeypatch.setenv("CML_MONITOR_PUBLIC_URL", "https://monitor.example.com/")
    monkeypatch.setenv("WORKER_RUNBOOK_BASE_URL", "https://wiki.example.com/runbooks/")
    monkeypatch.setenv("WORKER_NOTIFICATION_GROUP_WAIT", "0")
    settings = load_settings(_env_file=None)
    assert settings.worker_notification_alertmanager_urls == ["http://am-1:9093", "http://am-2:9093"]
    assert settings.cml_monitor_public_url == "https://monitor.example.com"
    assert settings.worker_runbook_base_url == "https://wiki.example.com/runbooks"
    assert settings.worker_notification_group_wait == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKER_METRICS_POLL_INTERVAL", "0"),
        ("WORKER_METRICS_POLL_INTERVAL", "soon"),
        ("WORKER_CPU_THRESHOLD", "150"),
        ("WORKER_MEMORY_THRESHOLD", "-1"),
        ("WORKER_NOTIFICATION_WEBHOOKS", "not a url"),
        ("DATABASE_URL", "mysql://x"),
        ("BACKGROUND_JOB_STORE_URL", "memcached://x"),
        ("CML_MONITOR_PORT", "70000"),
        ("API_TOKENS", "root:abc"),
        ("LOG_LEVEL", "LOUD"),
        ("WORKER_IDLE_TIMEOUT", "-5"),
        ("CML_AUTOMATION_USERS", "^ok-bot,([unclosed"),
        ("WORKER_AUTO_PAUSE_GRACE", "-1"),
        ("CML_LICENSING_CHECK_INTERVAL", "0"),
        ("WORKER_DISK_THRESHOLD", "101"),
        ("WORKER_NOTIFICATION_ALERTMANAGER_URLS", "http://am:9093,am2:9093"),
        ("CML_MONITOR_PUBLIC_URL", "monitor.example.com"),
        ("WORKER_RUNBOOK_BASE_URL", " "),
        ("WORKER_NOTIFICATION_GROUP_WAIT", "-1"),
        ("WORKER_NOTIFICATION_ALERTMANAGER_REFRESH", "1"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert name in message
    assert "\n" not in message


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS", "root:topsecret")
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert "topsecret" not in str(caught.value)
