"""`docs/configuration.md` is generated from the settings class and lists every setting."""

from __future__ import annotations

from tools import settings_doc

from cml_monitor.settings import Settings


def test_the_configuration_page_is_up_to_date_and_lists_every_setting() -> None:
    page = settings_doc.PAGE.read_text()
    assert page == settings_doc.render(), "run: python -m tools.settings_doc"
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in page, name
    assert "(not described yet)" not in page  # every setting says what it does


def test_the_check_mode_fails_on_a_stale_page(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n")
    monkeypatch.setattr(settings_doc, "PAGE", stale)
    monkeypatch.setattr(settings_doc, "ROOT", tmp_path)
    assert settings_doc.main(["--check"]) == 1
    assert settings_doc.main([]) == 0 and settings_doc.main(["--check"]) == 0
