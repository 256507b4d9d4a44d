"""The dashboard in a real browser: headless Chromium driven by Playwright, fed by the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from cml_fleet_sim.serving import ThreadedServer
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.api.app import create_app
from cml_monitor.domain import Worker
from cml_monitor.storage import CMLWorkerRepository, create_engine, migrate

from .conftest import make_settings
from .helpers import eventually

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POLL = 2
STATUS = "document.querySelector('#alert-status').textContent"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def serve_fleet(
    tmp_path: Path, workers: int, **overrides: Any
) -> tuple[FleetSimulator, ThreadedServer, list[Worker]]:
    sim = FleetSimulator(instant_transitions=True, seed=4)
    sim.start()
    instances = sim.add_workers(workers)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'dashboard.db'}"
    engine = create_engine(database_url)
    await migrate(engine)
    repository = CMLWorkerRepository(engine)
    registered = []
    for number, instance in enumerate(instances):
        worker = Worker.register(
            name=f"lab-{number:02d}",
            aws_region="us-east-1",
            aws_instance_id=instance.instance_id,
            cml_url=sim.controller_url(instance.instance_id),
            now=datetime.now(UTC),
        )
        registered.append(await repository.add_async(worker))
    await engine.dispose()
    settings = make_settings(database_url, sim.url, **{"worker_metrics_poll_interval": POLL, **overrides})
    server = ThreadedServer(create_app(settings), lifespan="on").start()
    return sim, server, registered


async def until(page: Page, expression: str, timeout: float = 20_000) -> None:
    """Wait for a JavaScript condition, evaluated over the DevTools protocol.

    Not `page.wait_for_function`: that evaluates strings inside the page, which the
    dashboard's Content-Security-Policy (no `unsafe-eval`) rightly forbids.
    """
    deadline = asyncio.get_running_loop().time() + timeout / 1000
    while not await page.evaluate(expression):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout / 1000:g} s: {expression}")
        await asyncio.sleep(0.1)


def watch_console(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


async def test_fleet_live_updates_and_worker_chart(browser: Browser, tmp_path: Path) -> None:
    sim, server, workers = await serve_fleet(tmp_path, 6)
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        errors = watch_console(page)
        loop = asyncio.get_running_loop()
        fleet_reads: list[float] = []  # when the page read the whole fleet again
        page.on("request", lambda r: fleet_reads.append(loop.time()) if "/api/workers?" in r.url else None)
        await page.goto(f"{server.url}/")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 6", timeout=20_000)
        # Native ES modules: what the page defines stays in its modules, nothing is a global.
        assert await page.evaluate(
            "['state', 'api', 'el', 'renderFleet', 'workerRow', 'applyEvent', 'start']"
            ".every((name) => !(name in window))"
        )
        assert await page.evaluate("typeof state === 'undefined' && typeof KIND_NAMES === 'undefined'")
        await until(
            page,
            "[...document.querySelectorAll('#fleet tbody td.status')]"
            ".every(td => td.textContent === 'running')",
            timeout=20_000,
        )
        await page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)
        assert "both checks ok" in (await page.text_content(f"tr[data-worker='{workers[0].id}']") or "")

        victim = workers[2]
        stopped_at = loop.time()
        sim.fleet.stop(victim.aws_instance_id, requested=False)
        # Within two polls, without a reload: the row changes through the live event stream.
        await until(
            page,
            f"document.querySelector('tr[data-worker=\"{victim.id}\"] td.status')?.textContent === 'stopped'",
            timeout=(2 * POLL + 3) * 1000,
        )
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
        # ... from the event's own `worker`, not by reading the fleet again (unless the page's
        # 30 s reload fell in between).
        if loop.time() - fleet_reads[0] < 29:
            assert [t for t in fleet_reads if t >= stopped_at] == []

        hot = workers[3]
        sim.fleet.set_metrics(hot.aws_instance_id, cpu=97.0)
        await until(
            page,
            f"document.querySelector('tr[data-worker=\"{hot.id}\"]')?.textContent.includes('CPU high')",
            timeout=(2 * POLL + 5) * 1000,
        )

        await page.fill("#filter", "lab-02")
        assert await page.locator("#fleet tbody tr").count() == 1
        await page.fill("#filter", "")
        await page.click("th button:has-text('CPU')")
        assert await page.get_attribute("th button:has-text('CPU')", "aria-sort") == "ascending"

        await page.click(f"a[href='#/workers/{workers[0].id}']")
        await page.wait_for_selector("#chart svg")
        await page.click(".ranges button:has-text('1h')")
        # The worker page is live: each collection draws it again, with one more point.
        await until(page, "document.querySelectorAll('#chart circle.point').length >= 4", timeout=20_000)
        # The chosen hour on the x-axis (ticks every 10 minutes), both thresholds, values on hover.
        assert await page.locator("#chart text.tick").count() >= 5
        assert await page.locator("#chart line.threshold").count() == 2
        hover = await page.text_content("#chart circle.point.cpu title")
        assert hover is not None and "CPU" in hover and "%" in hover
        await page.goto(f"{server.url}/#/workers/{victim.id}")  # stopped since: shaded, not a line
        await page.wait_for_selector("#chart rect.stopped")
        await page.screenshot(path=str(tmp_path / "worker.png"), full_page=True)
        assert (tmp_path / "fleet.png").stat().st_size > 10_000
        assert (tmp_path / "worker.png").stat().st_size > 10_000

        phone = await browser.new_page(viewport={"width": 390, "height": 800})
        phone_errors = watch_console(phone)
        await phone.goto(f"{server.url}/")
        await phone.wait_for_selector("#fleet tbody tr")
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 400  # no sideways scrolling of the page on a phone
        reached = set()
        for _ in range(30):  # everything that matters is reachable with the keyboard
            await phone.keyboard.press("Tab")
            reached.add(
                await phone.evaluate(
                    "document.activeElement.matches('a[href^=\"#/workers/\"]') ? 'worker link' :"
                    " document.activeElement.matches('th button') ? 'sort' :"
                    " document.activeElement.id || document.activeElement.tagName"
                )
            )
        assert {"worker link", "sort", "filter", "status-filter"} <= reached
        assert errors == [] and phone_errors == []
    finally:
        server.stop()
        sim.stop()


async def test_the_dashboard_asks_for_a_token_and_keeps_it(browser: Browser, tmp_path: Path) -> None:
    sim, server, _workers = await serve_fleet(tmp_path, 2, api_tokens="viewer:peek-token")
    try:
        page = await browser.new_page()
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        await page.wait_for_selector("#login[open]")
        await page.fill("#token", "peek-token")
        await page.click("#login button[type=submit]")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 2", timeout=20_000)
        await page.reload()
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 2", timeout=20_000)
        assert await page.locator("#login[open]").count() == 0  # kept for the browser session
        assert await page.text_content("#signed-in-as") == "signed in as viewer (viewer)"
        assert await page.is_visible("#sign-out")
        await page.click("#fleet tbody tr a")
        await page.wait_for_selector("#idle")
        assert await page.locator("#action-stop").count() == 0  # a viewer sees no buttons that act
        assert await page.is_disabled("#auto-pause")
        assert await page.locator("#save-thresholds, #collect-now").count() == 0
        assert await page.is_disabled("#threshold-cpu")
        await page.click("#sign-out")
        await page.wait_for_selector("#login[open]")
        assert await page.evaluate("sessionStorage.getItem('cml-monitor-token')") is None
        assert await page.is_hidden("#who")
        # The refused requests before sign-in are logged by the browser; nothing else may be.
        assert [e for e in errors if "401" not in e] == []
    finally:
        server.stop()
        sim.stop()


async def test_the_dashboard_signs_in_with_the_idp_using_pkce(browser: Browser, tmp_path: Path) -> None:
    from .idp import LoopbackIdp

    idp = LoopbackIdp().start()
    sim, server, _workers = await serve_fleet(
        tmp_path,
        2,
        oidc_issuer=idp.issuer,
        oidc_audience=idp.audience,
        oidc_roles_claim="realm_access.roles",
    )
    try:
        page = await browser.new_page()
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        await page.wait_for_selector("#login[open] #sso")
        assert await page.locator("#token-block").is_hidden()  # no static tokens configured
        await page.click("#sso")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 2", timeout=20_000)
        assert "code=" not in page.url  # the code does not linger in the address bar
        token = await page.evaluate("sessionStorage.getItem('cml-monitor-token')")
        assert token and token.count(".") == 2  # the IdP's JWT, kept for this browser session only
        assert await page.evaluate("localStorage.length") == 0
        assert [e for e in errors if "401" not in e] == []
    finally:
        server.stop()
        sim.stop()
        idp.stop()


async def test_the_api_docs_render_with_no_internet(browser: Browser, tmp_path: Path) -> None:
    """Swagger UI comes from the package: with every non-loopback request refused, it still
    renders the API (a CDN-hosted page would stay blank)."""
    sim, server, _workers = await serve_fleet(tmp_path, 1)
    try:
        page = await browser.new_page()
        refused: list[str] = []

        async def loopback_only(route: Any) -> None:
            if route.request.url.startswith(server.url):
                await route.continue_()
            else:
                refused.append(route.request.url)
                await route.abort()

        await page.route("**/*", loopback_only)
        await page.goto(f"{server.url}/docs")
        await page.wait_for_selector(".swagger-ui .title", timeout=20_000)
        assert "CML Worker Monitor" in await page.inner_text(".swagger-ui .title")
        await page.wait_for_selector('.opblock-summary-path[data-path="/api/workers"]', timeout=20_000)
        assert refused == []  # nothing was even attempted beyond loopback
    finally:
        server.stop()
        sim.stop()


async def test_controller_health_licence_and_scheduled_events_are_shown(
    browser: Browser, tmp_path: Path
) -> None:
    sim, server, workers = await serve_fleet(tmp_path, 3)
    unhealthy, unlicensed, retiring = workers
    sim.set_controller(unhealthy.aws_instance_id, compute_admitted=False)
    sim.set_controller(unlicensed.aws_instance_id, licensed=False)
    sim.schedule_event(retiring.aws_instance_id, "instance-retirement", in_days=5)
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        await page.goto(f"{server.url}/")

        def cml_cell(worker: Worker) -> str:
            return f"document.querySelector('tr[data-worker=\"{worker.id}\"] td.cml')?.textContent"

        await until(page, f"{cml_cell(unhealthy)} === 'unhealthy'")
        await until(page, f"{cml_cell(unlicensed)} === 'unlicensed'")
        await until(page, f"{cml_cell(retiring)} === 'ok'")

        await page.goto(f"{server.url}/#/workers/{unhealthy.id}")
        await page.wait_for_selector("#controller")
        text = await page.text_content("#controller")
        assert text is not None and "cml-compute-1" in text and "REGISTERED" in text and "unhealthy" in text
        assert "2.9.0" in text and "COMPLETED" in text

        await page.goto(f"{server.url}/#/workers/{retiring.id}")
        await page.wait_for_selector("#scheduled-events")
        events = await page.text_content("#scheduled-events")
        assert events is not None and "instance-retirement" in events and "degraded hardware" in events
        await page.screenshot(path=str(tmp_path / "controller.png"), full_page=True)
        assert (tmp_path / "controller.png").stat().st_size > 10_000
        assert errors == []
    finally:
        server.stop()
        sim.stop()


async def test_worker_page_shows_idle_state_and_admins_act_from_it(browser: Browser, tmp_path: Path) -> None:
    import httpx

    sim, server, workers = await serve_fleet(tmp_path, 2)
    target = workers[0]
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 2")
        assert "hours paused by auto-pause" in (await page.text_content(".summary") or "")
        await page.goto(f"{server.url}/#/workers/{target.id}")
        await page.wait_for_selector("#idle #action-reboot")
        assert await page.is_checked("#auto-pause")
        await page.uncheck("#auto-pause")
        await until(page, "document.querySelector('#action-status').textContent.includes('auto-pause off')")
        sim.set_labs(target.aws_instance_id, running=2, stopped=1)
        await page.click("#action-reboot")  # a dialog names the worker and its started labs
        await page.wait_for_selector("#confirm-action[open] #confirm-labs li")
        assert "Reboot lab-00?" in (await page.text_content("#confirm-title") or "")
        assert len(await page.locator("#confirm-labs li").all()) == 2
        assert "admin" in (await page.text_content("#confirm-labs") or "")
        await page.click("#confirm-cancel")
        await until(page, "document.querySelector('#action-status').textContent.includes('reboot cancelled')")
        assert sim.fleet.get(target.aws_instance_id).reboots == 0
        await page.click("#action-reboot")
        await page.wait_for_selector("#confirm-action[open] #confirm-labs li")
        await page.fill("#confirm-reason", "hung console")
        await page.screenshot(path=str(tmp_path / "confirm.png"))
        await page.check("#confirm-force")
        await page.click("#confirm-go")
        await until(page, "document.querySelector('#action-status').textContent.startsWith('reboot: ok')")
        await page.wait_for_selector("#actions tbody tr")
        row = await page.text_content("#actions tbody tr")
        assert row is not None and "reboot" in row and "manual" in row and "reason: hung console" in row
        assert "local" in row  # authentication is off
        assert sim.fleet.get(target.aws_instance_id).reboots == 1
        # A running worker cannot be started: the button says so, and the API's refusal names it.
        assert await page.is_disabled("#action-start") and not await page.is_disabled("#action-stop")
        assert "lab-00 is running" in (await page.get_attribute("#action-start", "title") or "")
        async with httpx.AsyncClient(base_url=server.url) as client:
            refused = await client.post(f"/api/workers/{target.id}/start")
        assert refused.status_code == 409 and "lab-00" in refused.json()["detail"]
        assert target.id not in refused.json()["detail"]
        idle_badge = await page.text_content("#idle h2") or ""
        assert "in use" in idle_badge or "idle" in idle_badge
        assert "EC2 via CloudWatch" in (await page.text_content("section.detail") or "")
        next_run = await page.text_content("#next-collection") or ""
        assert next_run.startswith("in ") or next_run == "just now", next_run
        legend = await page.text_content("#chart-legend") or ""
        assert "not running" in legend and "thresholds" in legend
        assert "above the alert threshold" in (await page.text_content("#bar-legend") or "")
        assert await page.evaluate("window.scrollY") == 0
        await page.screenshot(path=str(tmp_path / "idle.png"), full_page=True)
        assert [e for e in errors if "409" not in e] == []
    finally:
        server.stop()
        sim.stop()


async def test_alert_work_from_the_alerts_page_ack_silence_and_end(browser: Browser, tmp_path: Path) -> None:
    import httpx

    sim, server, workers = await serve_fleet(tmp_path, 3)
    hot, other = workers[1], workers[2]
    sim.fleet.set_metrics(hot.aws_instance_id, cpu=97.0)
    sim.fleet.set_metrics(other.aws_instance_id, cpu=98.0)
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 3")
        await page.click("nav a[href='#/alerts']")
        await page.wait_for_selector("#alert-state")

        async def rows_with(text: str, count: int) -> None:
            while await page.locator("#alerts tbody tr", has_text=text).count() < count:
                await page.select_option("#alert-state", "firing")  # re-reads the alerts
                await asyncio.sleep(0.5)

        await asyncio.wait_for(rows_with("CPU high", 2), 30)
        row = page.locator("#alerts tbody tr", has_text="lab-01")
        text = await row.text_content() or ""
        assert "CPU high" in text and "% > 90 %" in text  # the value with its unit and threshold
        assert "CPU above" in text or "CPU" in text

        async def work(row_text: str, what: str, scope: str | None = None, comment: str = "") -> None:
            await page.locator("#alerts tbody tr", has_text=row_text).locator("button.work").click()
            await page.wait_for_selector("#work-dialog[open]")
            title = await page.text_content("#work-title") or ""
            assert row_text in title
            await page.check(f"#work-dialog input[name=work-what][value={what}]")
            if scope:
                await page.check(f"#work-dialog input[name=work-scope][value={scope}]")
            await page.fill("#work-comment", comment)
            await page.click("#work-submit")
            await until(page, "!document.querySelector('#work-dialog')")

        await work("lab-01", "ack", comment="looking into it")
        await until(
            page,
            f"{STATUS}.startsWith('acknowledged CPU high on lab-01')",
        )
        row = page.locator("#alerts tbody tr", has_text="lab-01")
        text = await row.text_content() or ""
        assert "acknowledged by anonymous" in text and "looking into it" in text

        # This worker and this kind: the marker shows on lab-01's alert only.
        await work("lab-01", "silence", "worker-kind", "known hot")
        await until(
            page,
            f"{STATUS}.startsWith('silenced CPU high on lab-01 until')",
        )
        marked = "[...document.querySelectorAll('#alerts tbody tr')]"
        await until(page, f"{marked}.filter(r => r.querySelector('.badge.silenced')).length === 1")
        assert (
            await page.locator("#alerts tbody tr", has_text="lab-01").locator(".badge.silenced").count() == 1
        )
        async with httpx.AsyncClient(base_url=server.url) as client:
            stored = (await client.get("/api/silences")).json()["items"]
        assert [(s["worker_id"], s["kind"]) for s in stored] == [(hot.id, "cpu")]

        # This kind on every worker: both alerts carry the marker.
        await work("lab-02", "silence", "kind")
        await until(page, f"{marked}.filter(r => r.querySelector('.badge.silenced')).length === 2")
        # This worker, every kind.
        await work("lab-02", "silence", "worker")
        async with httpx.AsyncClient(base_url=server.url) as client:
            stored = (await client.get("/api/silences")).json()["items"]
        assert sorted((s["worker_id"] or "", s["kind"] or "") for s in stored) == sorted(
            [(hot.id, "cpu"), ("", "cpu"), (other.id, "")]
        )
        # The page redraws after each change: wait for it, so a click never lands on a row of
        # the page before (an "End now" for a silence already ended).
        silence_rows = "document.querySelectorAll('#silences tbody tr').length"
        await until(page, f"{silence_rows} === 3")
        for left in (2, 1, 0):
            await page.locator("#silences button.end-silence").first.click()
            await until(page, "document.querySelector('#alert-status').textContent === 'end silence: done'")
            await page.evaluate("document.querySelector('#alert-status').textContent = ''")
            await until(page, f"{silence_rows} === {left}")
        await until(page, "!document.querySelector('#silences')")
        await until(page, "!document.querySelector('#alerts .badge.silenced')")
        await page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)
        await page.click("nav a[href='#/']")  # the fleet shows the ack too
        await until(
            page,
            "[...document.querySelectorAll('#fleet tbody tr')]"
            ".some(r => r.textContent.includes('lab-01')"
            " && r.textContent.includes('CPU high · acknowledged'))",
        )

        # Ahead of maintenance, from the worker's page: a silence of every alert of the worker.
        calm = workers[0]
        await page.goto(f"{server.url}/#/workers/{calm.id}")
        await page.click("#silence-worker")
        await page.wait_for_selector("#work-dialog[open]")
        assert "Silence lab-00" in (await page.text_content("#work-title") or "")
        await page.select_option("#work-duration", "8")
        await page.fill("#work-comment", "maintenance window")
        await page.click("#work-submit")
        await until(
            page,
            "document.querySelector('#silence-status')?.textContent"
            ".startsWith('silenced every alert on lab-00')",
        )
        await page.wait_for_selector("#worker-silences li")
        assert "maintenance window" in (await page.text_content("#worker-silences") or "")
        async with httpx.AsyncClient(base_url=server.url) as client:
            stored = (await client.get("/api/silences?active=true")).json()["items"]
        assert [(s["worker_id"], s["kind"]) for s in stored] == [(calm.id, None)]

        # At phone width each alert is a block: its button is in view, nothing scrolls sideways.
        phone = await browser.new_page(viewport={"width": 390, "height": 800})
        phone_errors = watch_console(phone)
        await phone.goto(f"{server.url}/#/alerts")
        await phone.wait_for_selector("#alerts button.work")
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
        wrap = await phone.evaluate(
            "(() => { const w = document.querySelector('#alerts').parentElement;"
            " return w.scrollWidth - w.clientWidth; })()"
        )
        assert wrap <= 0  # the table itself does not scroll sideways either
        for button in await phone.locator("#alerts button.work").all():
            box = await button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        await phone.locator("#alerts button.work").first.click()
        await phone.wait_for_selector("#work-dialog[open]")
        box = await phone.locator("#work-submit").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        assert errors == [] and phone_errors == []
    finally:
        server.stop()
        sim.stop()


async def test_problems_come_first_and_an_unknown_instance_id_is_explained(
    browser: Browser, tmp_path: Path
) -> None:
    import httpx

    sim, server, _workers = await serve_fleet(tmp_path, 3)
    try:
        body = {"name": "zz-typo", "aws_region": "us-east-1", "aws_instance_id": "i-0123456789abcdef0"}
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.post("/api/workers", json=body)).status_code == 201
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        first = "document.querySelector('#fleet tbody tr')"
        await until(page, f"{first}?.textContent.includes('not found in EC2')")
        assert "zz-typo" in (await page.text_content("#fleet tbody tr") or "")  # a problem: first row
        title = await page.get_attribute("#fleet tbody tr td.status", "title")
        assert title is not None and "instance id" in title
        assert errors == []
    finally:
        server.stop()
        sim.stop()


async def test_admins_edit_thresholds_and_collect_now_from_the_worker_page(
    browser: Browser, tmp_path: Path
) -> None:
    import httpx

    # Collections an hour apart: the only one during the test is the one asked for.
    sim, server, workers = await serve_fleet(tmp_path, 1, worker_metrics_poll_interval=3600)
    target = workers[0]
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        await page.goto(f"{server.url}/#/workers/{target.id}")
        await page.wait_for_selector("#thresholds #threshold-cpu")
        assert await page.get_attribute("#threshold-cpu", "placeholder") == "90 (fleet)"
        both = await page.text_content("#chart .threshold-label-cpu")
        assert both == "CPU and memory threshold 90 %"  # equal thresholds: one label, not two on top

        await page.fill("#threshold-cpu", "150")
        await page.click("#save-thresholds")
        await until(
            page, "document.querySelector('#settings-status').textContent.startsWith('thresholds not saved')"
        )
        said = await page.text_content("#settings-status") or ""
        assert "cpu_threshold" in said  # the field the API refused, by name

        await page.fill("#threshold-cpu", "42.5")
        await page.click("#save-thresholds")
        await until(
            page, "document.querySelector('#settings-status').textContent.startsWith('thresholds saved')"
        )
        assert "CPU 42.5 %, memory 90 %" in (await page.text_content("#settings-status") or "")
        async with httpx.AsyncClient(base_url=server.url) as client:
            stored = (await client.get(f"/api/workers/{target.id}")).json()
        assert stored["cpu_threshold"] == 42.5 and stored["memory_threshold"] is None
        await until(
            page,
            "document.querySelector('#chart .threshold-label-cpu')?.textContent === 'CPU threshold 42.5 %'",
        )
        assert await page.get_attribute("#threshold-cpu", "value") == "42.5"

        before = stored["last_collected_at"]
        await page.click("#collect-now")
        await until(page, "document.querySelector('#settings-status').textContent.startsWith('collected at')")
        async with httpx.AsyncClient(base_url=server.url) as client:
            after = (await client.get(f"/api/workers/{target.id}")).json()["last_collected_at"]
        assert after is not None and after != before
        assert [e for e in errors if "422" not in e] == []  # the refused save, logged by the browser
    finally:
        server.stop()
        sim.stop()


async def test_the_actions_page_lists_every_stop_start_and_reboot(browser: Browser, tmp_path: Path) -> None:
    import httpx

    sim, server, workers = await serve_fleet(
        tmp_path, 2, worker_auto_pause_enabled=True, worker_auto_pause_dry_run=True
    )
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        await until(page, "document.querySelectorAll('#fleet tbody .badge.running').length === 2")
        async with httpx.AsyncClient(base_url=server.url) as client:
            forced = {"force": True, "reason": "end of class"}  # whatever labs the simulator started
            assert (await client.post(f"/api/workers/{workers[0].id}/reboot", json=forced)).status_code == 202
            assert (await client.post(f"/api/workers/{workers[1].id}/stop", json=forced)).status_code == 202
        await page.click("nav a[href='#/actions']")
        await until(page, "document.querySelectorAll('#fleet-actions tbody tr').length === 2")
        rows = [await r.text_content() or "" for r in await page.locator("#fleet-actions tbody tr").all()]
        assert "lab-01" in rows[0] and "stop" in rows[0] and "by hand" in rows[0]  # newest first
        assert "reason: end of class" in rows[0]
        assert "lab-00" in rows[1] and "reboot" in rows[1]
        policy = await page.text_content("#policy") or ""
        assert "auto-pause on, dry run" in policy and "remediation of impaired workers off" in policy
        await page.select_option("#action-kind", "reboot")
        await until(page, "document.querySelectorAll('#fleet-actions tbody tr').length === 1")
        assert "reboot" in (await page.text_content("#fleet-actions tbody tr") or "")
        await page.select_option("#action-result", "failed")
        await page.wait_for_selector("text=No stop, start or reboot matches.")
        await page.screenshot(path=str(tmp_path / "actions.png"), full_page=True)
        assert errors == []
    finally:
        server.stop()
        sim.stop()


async def test_every_column_is_reachable_at_phone_width(browser: Browser, tmp_path: Path) -> None:
    sim, server, workers = await serve_fleet(tmp_path, 3)
    sim.fleet.set_metrics(workers[0].aws_instance_id, cpu=97.0, memory=96.0)
    try:
        phone = await browser.new_page(viewport={"width": 390, "height": 800})
        errors = watch_console(phone)
        for route, table in (("#/", "#fleet"), ("#/alerts", "#alerts"), ("#/actions", None)):
            await phone.goto(f"{server.url}/{route}")
            if table == "#alerts":
                # The alerts page is live: the hot worker's alert appears without a reload.
                await phone.wait_for_selector("#alerts tbody tr", timeout=20_000)
            elif table:
                await phone.wait_for_selector(f"{table} tbody tr")
            else:
                await phone.wait_for_selector("#policy")
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{route}: the page itself scrolls sideways ({width} px)"
            await asyncio.sleep(POLL)  # a live redraw or two: the header stays in view
            assert await phone.evaluate("window.scrollY") == 0, f"{route}: loaded scrolled down"
            if table is None:
                continue
            if table == "#alerts":  # stacked at phone width: no header row, no sideways scroll
                wrap = await phone.evaluate(
                    "(() => { const w = document.querySelector('#alerts').parentElement;"
                    " return w.scrollWidth - w.clientWidth; })()"
                )
                assert wrap <= 0
                continue
            headers = phone.locator(f"{table} thead th")
            labels = []
            for index in range(await headers.count()):
                header = headers.nth(index)
                for attempt in range(5):  # a live redraw may replace the table under the locator
                    try:
                        await header.scroll_into_view_if_needed()
                        break
                    except PlaywrightError as error:
                        if "not attached" not in str(error) or attempt == 4:
                            raise
                box = await header.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390 + 1, (
                    route,
                    index,
                    box,
                )
                labels.append((await header.text_content() or "").strip())
            if table == "#fleet":
                assert labels[:5] == ["Name", "Status", "Alerts", "CPU", "Memory"]
                assert {"Labs", "CML", "Checks", "Collected", "Region", "Instance"} <= set(labels)
                name = phone.locator("#fleet tbody tr td").first
                box = await name.bounding_box()  # scrolled all the way: the name is still in view
                assert box is not None and box["x"] >= 0
                # A live redraw keeps the table where it was scrolled to.
                scrolled = await phone.evaluate("document.querySelector('#fleet').parentElement.scrollLeft")
                assert scrolled > 0
                await phone.evaluate("document.querySelector('#fleet').dataset.seen = 'yes'")
                await until(phone, "!document.querySelector('#fleet').dataset.seen")  # drawn again
                again = await phone.evaluate("document.querySelector('#fleet').parentElement.scrollLeft")
                assert again == scrolled
        await phone.goto(f"{server.url}/#/workers/{workers[0].id}")
        await phone.wait_for_selector("#chart svg")
        assert await phone.evaluate("window.scrollY") == 0  # the page loads at the top, header in view
        await phone.click("nav a[href='#/alerts']")
        await phone.wait_for_selector("#alert-state")
        assert await phone.evaluate("window.scrollY") == 0
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
        await phone.screenshot(path=str(tmp_path / "phone-worker.png"), full_page=True)
        assert errors == []
    finally:
        server.stop()
        sim.stop()


async def test_a_banner_on_every_page_while_a_region_is_not_collected(
    browser: Browser, tmp_path: Path
) -> None:
    sim, server, workers = await serve_fleet(tmp_path, 2, aws_max_attempts=1)
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 2")
        await until(page, "document.querySelector('#stale').hidden === true")
        sim.set_faults(error_rate=1.0)  # AWS refuses every call: the region is no longer watched
        for hash_ in ("#/", f"#/workers/{workers[0].id}", "#/alerts"):
            await page.goto(f"{server.url}/{hash_}")
            await until(page, "!document.querySelector('#stale').hidden", timeout=30_000)
            banner = await page.text_content("#stale") or ""
            assert banner.startswith("Not watching: us-east-1 last collected"), banner
        sim.set_faults(error_rate=0.0)
        async with httpx.AsyncClient(base_url=server.url) as client:  # collected again…

            async def watched() -> bool:
                return (await client.get("/api/monitoring/collection")).json()["stale"] == []

            await eventually(watched, timeout=40)
        await page.reload()  # …and a page opened now (not only the next 15 s poll) says so
        await until(page, "document.querySelector('#stale').hidden === true", timeout=10_000)
        assert errors == []
    finally:
        server.stop()
        sim.stop()


async def test_admins_register_import_rename_and_remove_workers(browser: Browser, tmp_path: Path) -> None:
    import httpx

    sim, server, _workers = await serve_fleet(tmp_path, 1, worker_metrics_poll_interval=3600)
    spare = sim.fleet.create(1, tags={"Name": "spare-1"})[0]
    tagged = sim.fleet.create(2, tags={"Role": "cml"})
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        await page.goto(f"{server.url}/")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 1")
        await page.click("#manage summary")

        # Register: a bad instance id is refused with the API's own message, naming the field.
        await page.fill("#new-name", "spare")
        await page.fill("#new-instance", "i-nothex")
        await page.click("#register")
        await until(page, "document.querySelector('#manage-status').textContent.startsWith('not registered')")
        said = await page.text_content("#manage-status") or ""
        async with httpx.AsyncClient(base_url=server.url) as client:
            api_said = (
                await client.post(
                    "/api/workers",
                    json={"name": "spare", "aws_region": "us-east-1", "aws_instance_id": "i-nothex"},
                )
            ).json()["detail"][0]["msg"]
        assert "aws_instance_id" in said and api_said in said
        await page.fill("#new-instance", spare.instance_id)
        await page.click("#register")
        await until(
            page, "document.querySelector('#manage-status').textContent.startsWith('registered spare')"
        )
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 2")

        # Import by tag: the preview lists what would be added; nothing is added until confirmed.
        await page.fill("#import-tags", "Role=cml")
        await page.click("#import-preview")
        await page.wait_for_selector("#would-import li")
        preview = await page.text_content("#would-import") or ""
        assert all(i.instance_id in preview for i in tagged)
        assert await page.locator("#fleet tbody tr").count() == 2
        await page.click("#import-run")
        await until(
            page, "document.querySelector('#manage-status').textContent.startsWith('imported 2 worker(s)')"
        )
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 4")

        # Rename, set and clear the controller URL, from the worker's page.
        async with httpx.AsyncClient(base_url=server.url) as client:
            found = (await client.get(f"/api/workers/by-instance/{spare.instance_id}")).json()
        await page.goto(f"{server.url}/#/workers/{found['id']}")
        await page.wait_for_selector("#manage-worker #edit-name")
        await page.fill("#edit-name", "spare-renamed")
        await page.click("#save-name")
        await until(page, "document.querySelector('h1')?.textContent.startsWith('spare-renamed')")
        await page.fill("#edit-url", "ftp://nope")
        await page.click("#save-url")
        await until(
            page, "document.querySelector('#edit-status').textContent.startsWith('controller URL not saved')"
        )
        assert "cml_url" in (await page.text_content("#edit-status") or "")
        await page.fill("#edit-url", "https://127.0.0.2:9")
        await page.click("#save-url")
        await until(page, "document.querySelector('#edit-status').textContent === 'controller URL: saved'")
        await page.click("#clear-url")
        await until(
            page, "document.querySelector('#edit-status').textContent === 'controller URL cleared: saved'"
        )
        async with httpx.AsyncClient(base_url=server.url) as client:
            stored = (await client.get(f"/api/workers/{found['id']}")).json()
        assert stored["name"] == "spare-renamed" and stored["cml_url"] is None

        # Remove: the confirmation names the worker and says its history goes too.
        await page.click("#remove-worker")
        await page.wait_for_selector("#remove-dialog[open]")
        text = await page.text_content("#remove-dialog") or ""
        assert "spare-renamed" in text and "history goes too" in text
        await page.click("#remove-cancel")
        await until(page, "document.querySelector('#remove-dialog') === null")  # closed, then removed
        await page.click("#remove-worker")
        await page.click("#remove-confirm")
        await until(page, "location.hash === '#/'")
        await until(page, "document.querySelectorAll('#fleet tbody tr').length === 3")
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get(f"/api/workers/{found['id']}")).status_code == 404
        assert [e for e in errors if "422" not in e] == []  # the refusals, logged by the browser
    finally:
        server.stop()
        sim.stop()
