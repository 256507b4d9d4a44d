"""Screenshots of the dashboard for the README: `python -m tools.screenshots http://127.0.0.1:8080`.

Run it against `cml-monitor demo` after a minute or two, when the scenario has made some noise.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import async_playwright

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def main(base: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = await browser.new_page(viewport={"width": 1320, "height": 860})
        await page.goto(f"{base}/")
        await page.wait_for_selector("#fleet tbody tr")
        await page.wait_for_timeout(1500)
        await page.screenshot(path=str(out / "dashboard-fleet.png"), full_page=True)
        busiest = await page.evaluate(
            # The idle worker of the demo's story: its auto-pause (dry run) shows on its page.
            "[...document.querySelectorAll('#fleet tbody tr')].find(r => r.textContent.includes('Idle'))"
            "?.querySelector('a')?.getAttribute('href')"
            " || document.querySelector('#fleet tbody a').getAttribute('href')"
        )
        await page.goto(f"{base}/{busiest}")
        await page.wait_for_selector("#chart svg")
        await page.wait_for_timeout(1500)
        await page.screenshot(path=str(out / "dashboard-worker.png"), full_page=True)
        await page.goto(f"{base}/#/alerts")
        await page.wait_for_selector("#alert-state")
        await page.wait_for_timeout(1500)
        await page.screenshot(path=str(out / "dashboard-alerts.png"), full_page=True)
        await page.goto(f"{base}/#/actions")
        await page.wait_for_selector("#policy")
        await page.wait_for_timeout(1500)
        await page.screenshot(path=str(out / "dashboard-actions.png"), full_page=True)
        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        await phone.goto(f"{base}/")
        await phone.wait_for_selector("#fleet tbody tr")
        await phone.wait_for_timeout(1500)
        await phone.screenshot(path=str(out / "dashboard-phone.png"))
        await browser.close()


if __name__ == "__main__":
    target = Path("docs")
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080", target))
