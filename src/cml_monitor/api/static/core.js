// CML Worker Monitor dashboard — Shared by every page: state, the DOM helper, API calls, the
// sign-in dialog, formatting. Native ES modules (main.js is the entry and imports the rest):
// each file says what it uses and what it offers, no build step, nothing fetched from the
// internet. This one imports nothing: every other module builds on it.

export const state = {
  token: sessionStorage.getItem("cml-monitor-token") || "",
  workers: new Map(),
  firing: new Map(), // worker id -> [kinds]
  sort: { key: "problems", dir: 1 }, // problems first until a column is chosen
  filter: "",
  statusFilter: "",
  range: "1h",
  refreshTimer: null,
  role: "viewer",
  summary: null,
  alertFilter: { state: "firing", kind: "" },
  actionFilter: { kind: "", result: "" },
  notices: new Map(), // "worker id:line id" -> what the last button on a worker page did
  awaitingCollection: null, // a worker id whose "Collect now" result is awaited
};

// Alert kinds as an operator says them.
export const KIND_NAMES = {
  cpu: "CPU high", memory: "Memory high", status_check: "EC2 status check impaired",
  unexpected_stop: "Stopped unexpectedly", unreachable: "Not collected (unreachable)",
  cml_unreachable: "CML controller unreachable", cml_unhealthy: "CML controller unhealthy",
  license: "CML licence", disk: "Controller disk full", scheduled_event: "EC2 scheduled event", idle: "Idle",
  collection_failing: "Collection failing (whole region)",
};

export function onFleetPage() {
  return location.hash === "" || location.hash === "#/";
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const main = $("#main");

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value; // CSSOM: allowed by the page's CSP
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// -- API -------------------------------------------------------------------------------------

export class Unauthorized extends Error {}

export async function api(path) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

export async function send(path, method, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) throw new Unauthorized();
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(explain(answer.detail) || `HTTP ${response.status}`);
  return answer;
}

// A refusal as the API words it: a sentence, or (HTTP 422) each field and what is wrong with it.
function explain(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return "";
}

// Draw the page in view again. Live updates redraw pages; a table scrolled sideways (on a phone)
// stays where it was instead of jumping back to its first column.
export function drawPage(...children) {
  const offsets = new Map([...main.querySelectorAll(".tablewrap > table[id]")].map((t) => [t.id, t.parentElement.scrollLeft]));
  main.replaceChildren(...children);
  for (const table of main.querySelectorAll(".tablewrap > table[id]")) {
    if (offsets.get(table.id)) table.parentElement.scrollLeft = offsets.get(table.id);
  }
}

// The answers a page is drawn from, or null when it is not to be drawn: a refused token asks
// for one, another failure is drawn by `failure(error)`, and a page left meanwhile is not drawn.
export async function loadPage(hash, failure, requests) {
  try {
    const answers = await Promise.all(requests);
    return location.hash === hash ? answers : null;
  } catch (error) {
    if (error instanceof Unauthorized) askForToken();
    else drawPage(...failure(error));
    return null;
  }
}

// A status line that outlives the page being drawn again (live updates redraw pages). `scope`
// keeps one worker's lines from showing on another's page.
export function statusLine(scope, id) {
  return el("p", { id, role: "status", class: "muted", text: state.notices.get(`${scope}:${id}`) || "" });
}

export function say(scope, id, text) {
  state.notices.set(`${scope}:${id}`, text);
  const line = document.getElementById(id);
  if (line) line.textContent = text;
}

// The threshold that applies to a worker: its own, else the fleet's.
export function thresholdOf(worker, key) {
  const own = worker[`${key}_threshold`];
  if (own !== null && own !== undefined) return own;
  const policy = (state.summary || {}).policy;
  return policy ? policy[`${key}_threshold`] : 90;
}

export function askForToken(message) {
  const dialog = $("#login");
  const oidc = state.auth && state.auth.mode === "oidc";
  $("#sso-block").hidden = !oidc;
  $("#token-block").hidden = oidc && !state.auth.tokens;
  $("#login-error").textContent = message || "";
  if (!dialog.open) dialog.showModal();
  (oidc ? $("#sso") : $("#token")).focus();
}

// -- formatting ------------------------------------------------------------------------------

export function workerName(id) {
  return (state.workers.get(id) || {}).name || id.slice(0, 8);
}

// Who an alert is about: its worker, or the region for a fleet-level alert (no worker).
export function alertSubject(alert) {
  return alert.worker_id ? workerName(alert.worker_id) : `region ${alert.region}`;
}

// A summary card (a number and what it counts) and a fact card (a label over a value).
export function card(n, label, extra = "") {
  return el("div", { class: `card ${extra}` }, el("div", { class: "n", text: n }), el("div", { class: "l", text: label }));
}

export function fact(label, value) {
  return el("div", { class: "card" }, el("div", { class: "l", text: label }), el("div", {}, value));
}

// "12 min ago" for the past, "in 12 min" for the future (a snooze's end, the next collection).
export function ago(iso) {
  if (!iso) return "never";
  const delta = (Date.now() - Date.parse(iso)) / 1000;
  const seconds = Math.abs(delta);
  const span = seconds < 60 ? `${Math.round(seconds)} s` : seconds < 3600 ? `${Math.round(seconds / 60)} min`
    : seconds < 86400 ? `${Math.round(seconds / 3600)} h` : `${Math.round(seconds / 86400)} d`;
  if (delta < -1) return `in ${span}`;
  return seconds < 1 ? "just now" : `${span} ago`;
}

export function badge(value, label) {
  const text = value || "n/a";
  return el("span", { class: `badge ${text}`, text: label || text });
}

export function bar(value, threshold) {
  if (value === null || value === undefined) return el("span", { class: "muted", text: "—" });
  const level = value > (threshold || 90) ? "bad" : value > 75 ? "warn" : "";
  return el(
    "span",
    { class: "bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": value.toFixed(1) },
    el("span", { class: "track" }, el("span", { class: `fill ${level}`, style: `width:${Math.min(100, value)}%` })),
    `${value.toFixed(1)} %`,
  );
}
