// CML Worker Monitor dashboard — the banner that says, on every page, when figures are old.
// A region not collected for two intervals means the monitor is not watching it: the page
// would otherwise just age quietly. Polled, not pushed: when collection stops, no event comes.
import { $, Unauthorized, api } from "./core.js";

async function checkFreshness() {
  const banner = $("#stale");
  try {
    const status = await api("/api/monitoring/collection");
    const stale = status.enabled ? status.stale : [];
    banner.hidden = stale.length === 0;
    banner.textContent = stale.length
      ? `Not watching: ${stale.join("; ")}. Figures for these regions are old; check the collector (see /ready).`
      : "";
  } catch (error) {
    if (error instanceof Unauthorized) return; // the sign-in dialog says what to do
    banner.hidden = false;
    banner.textContent = `Cannot tell whether the fleet is watched: ${error.message}`;
  }
}

export function watchFreshness() {
  checkFreshness();
  setInterval(checkFreshness, 15000);
}
