// CML Worker Monitor dashboard — The entry module (the page's one script): live updates over
// SSE, routing between pages, and start-up. It imports the pages, which import what they use.
import { renderActions } from "./actions.js";
import { renderAlerts } from "./alerts.js";
import { $, Unauthorized, askForToken, drawPage, el, main, onFleetPage, say, state } from "./core.js";
import { loadFiring, loadFleet, renderFleet, workerRow } from "./fleet.js";
import { watchFreshness } from "./freshness.js";
import { finishSignIn } from "./signin.js";
import { renderWorker } from "./worker.js";

// A collection of one worker. The event's `worker` is the worker as `GET /api/workers/{id}`
// answers it, so it replaces the one held, as it is: one shape whether read or told.
// The stream is opened with `?shape=worker`: each event is the worker as GET /api/workers/{id}
// answers it, kept as it is.
function applyEvent(worker) {
  if (!state.workers.has(worker.id)) return; // a new worker shows with the next reload
  state.workers.set(worker.id, worker);
  const row = document.querySelector(`tr[data-worker="${worker.id}"]`);
  if (row) row.replaceWith(workerRow(worker));
  if (location.hash === `#/workers/${worker.id}`) {
    if (state.awaitingCollection === worker.id) {
      state.awaitingCollection = null;
      say(worker.id, "settings-status", `collected at ${new Date(worker.last_collected_at).toLocaleTimeString()}`);
    }
    rerenderSoon();
  }
  refreshAlertsSoon();
}

let alertsTimer = null;
function refreshAlertsSoon() {
  // Alert state is written just after a collection: look once the burst of events is over.
  clearTimeout(alertsTimer);
  alertsTimer = setTimeout(async () => {
    try {
      await loadFiring();
      rerenderSoon();
    } catch (error) {
      // the next refresh will tell
    }
  }, 1500);
}

// The page in view, drawn again with fresh data, unless someone is typing in it.
let rerenderTimer = null;
function rerenderSoon() {
  clearTimeout(rerenderTimer);
  rerenderTimer = setTimeout(() => {
    if (onFleetPage()) return renderFleet(); // keeps the filter's focus and caret itself
    const typing = main.contains(document.activeElement) && document.activeElement.matches("input:not([type=checkbox]), select, textarea");
    if (!typing) route();
  }, 500);
}

async function streamEvents() {
  const live = $("#live");
  for (;;) {
    try {
      const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
      state.streamAbort = new AbortController();
      const response = await fetch("/api/events?shape=worker", { headers, signal: state.streamAbort.signal });
      if (response.status === 401) { streaming = false; return askForToken(); }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      live.textContent = "live";
      live.classList.add("on");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const type = (block.match(/^event: ?(.*)$/m) || [])[1];
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.replace(/^data: ?/, "")).join("\n");
          if (type === "metrics" && data) applyEvent(JSON.parse(data));
          else if (type === "resync") refresh(); // we fell behind: reload rather than miss a worker
        }
      }
    } catch (error) {
      if (!state.token && state.auth && state.auth.mode !== "none") { streaming = false; return; } // signed out
    }
    live.textContent = "reconnecting…";
    live.classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

// -- routing ---------------------------------------------------------------------------------

async function route() {
  const match = location.hash.match(/^#\/workers\/([0-9a-f-]+)$/);
  if (match) return renderWorker(match[1]);
  if (location.hash === "#/alerts") return renderAlerts();
  if (location.hash === "#/actions") return renderActions();
  if (!location.hash.startsWith("#/")) location.hash = "#/";
  renderFleet();
}

async function refresh() {
  try {
    await loadFleet();
    rerenderSoon();
  } catch (error) {
    if (error instanceof Unauthorized) askForToken(state.token ? "That token was refused." : "");
  }
}

let streaming = false;
async function start() {
  try {
    await loadFleet();
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken(state.token ? "That token was refused." : "");
    drawPage(el("p", { class: "error", text: `Could not load the fleet: ${error.message}` }));
    return;
  }
  await route();
  if (!streaming) {
    streaming = true;
    streamEvents();
    watchFreshness();
  }
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(refresh, 30000);
}

// A new page starts at the top, header and navigation in view; focus moves to it for screen
// readers without the browser scrolling the header away.
window.addEventListener("hashchange", () => { route(); main.focus({ preventScroll: true }); window.scrollTo(0, 0); });

// The sign-in dialog's token: kept for this browser session, and the dashboard starts with it.
$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) return;
  state.token = token;
  sessionStorage.setItem("cml-monitor-token", state.token);
  $("#login").close();
  start();
});

async function boot() {
  try {
    state.auth = await (await fetch("/auth/config")).json();
  } catch (error) {
    state.auth = { mode: "none" };
  }
  if (state.auth.mode === "oidc") {
    const problem = await finishSignIn().catch(() => "The sign-in could not be completed; try again.");
    if (problem) return askForToken(problem);
  }
  start();
}
boot();
