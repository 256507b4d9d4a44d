// CML Worker Monitor dashboard: plain JavaScript, no build step, nothing fetched from the internet.
"use strict";

const state = {
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
const KIND_NAMES = {
  cpu: "CPU high", memory: "Memory high", status_check: "EC2 status check impaired",
  unexpected_stop: "Stopped unexpectedly", unreachable: "Not collected (unreachable)",
  cml_unreachable: "CML controller unreachable", cml_unhealthy: "CML controller unhealthy",
  license: "CML licence", disk: "Controller disk full", scheduled_event: "EC2 scheduled event", idle: "Idle",
};

function onFleetPage() {
  return location.hash === "" || location.hash === "#/";
}

const $ = (selector, root = document) => root.querySelector(selector);
const main = $("#main");

function el(tag, attrs = {}, ...children) {
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

class Unauthorized extends Error {}

async function api(path) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function send(path, method, body) {
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

// A status line that outlives the page being drawn again (live updates redraw worker pages).
function statusLine(workerId, id) {
  return el("p", { id, role: "status", class: "muted", text: state.notices.get(`${workerId}:${id}`) || "" });
}

function say(workerId, id, text) {
  state.notices.set(`${workerId}:${id}`, text);
  const line = document.getElementById(id);
  if (line) line.textContent = text;
}

// The threshold that applies to a worker: its own, else the fleet's.
function thresholdOf(worker, key) {
  const own = worker[`${key}_threshold`];
  if (own !== null && own !== undefined) return own;
  const policy = (state.summary || {}).policy;
  return policy ? policy[`${key}_threshold`] : 90;
}

function askForToken(message) {
  const dialog = $("#login");
  const oidc = state.auth && state.auth.mode === "oidc";
  $("#sso-block").hidden = !oidc;
  $("#token-block").hidden = oidc && !state.auth.tokens;
  $("#login-error").textContent = message || "";
  if (!dialog.open) dialog.showModal();
  (oidc ? $("#sso") : $("#token")).focus();
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) return;
  state.token = token;
  sessionStorage.setItem("cml-monitor-token", state.token);
  $("#login").close();
  start();
});

// -- single sign-on: authorization code with PKCE, in the browser, no client secret -------------

const REDIRECT_URI = `${location.origin}/`;

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function signInWithIdp() {
  const oidc = state.auth.oidc;
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("cml-monitor-pkce", JSON.stringify({ verifier, state: nonce }));
  const params = new URLSearchParams({
    response_type: "code",
    client_id: oidc.client_id,
    redirect_uri: REDIRECT_URI,
    scope: oidc.scope,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state: nonce,
  });
  location.assign(`${oidc.authorization_endpoint}?${params}`);
}

$("#sso").addEventListener("click", () => signInWithIdp());

// Back from the IdP with ?code=…&state=…: trade the code for a token. Returns an error or "".
async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return "";
  const saved = JSON.parse(sessionStorage.getItem("cml-monitor-pkce") || "{}");
  sessionStorage.removeItem("cml-monitor-pkce");
  history.replaceState(null, "", location.pathname + location.hash);
  if (params.has("error")) return `The identity provider said: ${params.get("error")}.`;
  if (!saved.state || saved.state !== params.get("state")) return "The sign-in could not be completed; try again.";
  const oidc = state.auth.oidc;
  const response = await fetch(oidc.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: REDIRECT_URI,
      client_id: oidc.client_id,
      code_verifier: saved.verifier,
    }),
  });
  if (!response.ok) return "The identity provider refused the sign-in.";
  state.token = (await response.json()).access_token || "";
  sessionStorage.setItem("cml-monitor-token", state.token);
  return "";
}

// -- formatting ------------------------------------------------------------------------------

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function badge(value, label) {
  const text = value || "n/a";
  return el("span", { class: `badge ${text}`, text: label || text });
}

function bar(value, threshold) {
  if (value === null || value === undefined) return el("span", { class: "muted", text: "—" });
  const level = value > (threshold || 90) ? "bad" : value > 75 ? "warn" : "";
  return el(
    "span",
    { class: "bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": value.toFixed(1) },
    el("span", { class: "track" }, el("span", { class: `fill ${level}`, style: `width:${Math.min(100, value)}%` })),
    `${value.toFixed(1)} %`,
  );
}

// -- fleet page ------------------------------------------------------------------------------

// What says whether a worker is well comes first: on a phone it fits without scrolling, and
// the rest (checks, when, where) is a sideways scroll away.
const COLUMNS = [
  ["name", "Name"], ["status", "Status"], ["alerts", "Alerts"], ["cpu_utilization", "CPU"],
  ["memory_utilization", "Memory"], ["active_labs_count", "Labs"], ["cml", "CML"], ["checks", "Checks"],
  ["last_collected_at", "Collected"], ["aws_region", "Region"], ["aws_instance_id", "Instance"],
];

// What the controller's state comes to, in one word (and the badge class that colours it).
function cmlVerdict(worker) {
  const cml = worker.cml;
  if (!worker.cml_url) return ["n/a", "no controller"];
  if (!cml || cml.reachable === null) return ["n/a", worker.status === "running" ? "not read yet" : "—"];
  if (!cml.reachable) return ["error", "unreachable"];
  if (cml.ready === false) return ["warning", "not ready"];
  if (cml.healthy === false) return ["error", "unhealthy"];
  if (cml.licensed === false || (cml.license_registration && cml.license_registration !== "COMPLETED")
      || (cml.license_authorization && cml.license_authorization !== "IN_COMPLIANCE")) return ["error", "unlicensed"];
  return ["ok", "ok"];
}

async function loadFiring() {
  const alerts = await api("/api/alerts?state=firing&limit=1000");
  state.firing = new Map();
  for (const alert of alerts.items) {
    const firing = state.firing.get(alert.worker_id) || [];
    firing.push({ kind: alert.kind, acknowledged: Boolean(alert.acknowledged_at) });
    state.firing.set(alert.worker_id, firing);
  }
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

async function loadFleet() {
  const workers = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api(`/api/workers?limit=1000&offset=${offset}`);
    workers.push(...page.items);
    if (workers.length >= page.total || page.items.length === 0) break;
  }
  state.workers = new Map(workers.map((w) => [w.id, w]));
  const [me, summary] = await Promise.all([api("/api/me"), api("/api/fleet/summary"), loadFiring()]);
  state.role = me.role;
  state.summary = summary;
}

function sortValue(worker, key) {
  if (key === "alerts") return (state.firing.get(worker.id) || []).length;
  if (key === "problems") {
    const trouble = 10 * (state.firing.get(worker.id) || []).length + (worker.status === "running" ? 0 : 5);
    return `${String(1000 - trouble).padStart(4, "0")} ${worker.name}`;
  }
  if (key === "checks") return `${worker.ec2_system_status_check}/${worker.ec2_instance_status_check}`;
  if (key === "cml") return cmlVerdict(worker)[1];
  const value = worker[key];
  return value === null || value === undefined ? -Infinity : value;
}

function visibleWorkers() {
  const needle = state.filter.toLowerCase();
  return [...state.workers.values()]
    .filter((w) => !state.statusFilter || w.status === state.statusFilter)
    .filter((w) => !needle || [w.name, w.aws_instance_id, w.aws_region].some((v) => (v || "").toLowerCase().includes(needle)))
    .sort((a, b) => {
      const x = sortValue(a, state.sort.key);
      const y = sortValue(b, state.sort.key);
      return (x > y ? 1 : x < y ? -1 : 0) * state.sort.dir;
    });
}

function workerRow(worker) {
  const firing = state.firing.get(worker.id) || [];
  const alertBadge = (a) => (a.acknowledged
    ? badge("acknowledged", `${KIND_NAMES[a.kind] || a.kind} · acknowledged`)
    : badge("firing", KIND_NAMES[a.kind] || a.kind));
  return el(
    "tr",
    { "data-worker": worker.id },
    el("td", {}, el("a", { href: `#/workers/${worker.id}`, text: worker.name })),
    el("td", { class: "status", title: worker.ec2_instance_state === "not-found" ? "EC2 does not know this instance id in this region: check the id and the region" : "" },
      worker.ec2_instance_state === "not-found" ? badge("error", "not found in EC2") : badge(worker.status)),
    el("td", { class: "alerts" }, firing.length ? firing.map(alertBadge) : el("span", { class: "muted", text: "—" })),
    el("td", {}, bar(worker.cpu_utilization, thresholdOf(worker, "cpu"))),
    el("td", {}, bar(worker.memory_utilization, thresholdOf(worker, "memory"))),
    el("td", { text: worker.active_labs_count }),
    el("td", { class: "cml" }, badge(...cmlVerdict(worker))),
    el("td", {}, checkBadges(worker)),
    el("td", { class: "muted", title: worker.last_collected_at || "", text: ago(worker.last_collected_at) }),
    el("td", { text: worker.aws_region }),
    el("td", { class: "muted", text: worker.aws_instance_id }),
  );
}

// Both EC2 status checks: one badge when both pass, else each labelled with what it says.
function checkBadges(worker) {
  const system = worker.ec2_system_status_check;
  const instance = worker.ec2_instance_status_check;
  if (system === "ok" && instance === "ok") return badge("ok", "both checks ok");
  return [badge(system, `system ${system || "n/a"}`), " ", badge(instance, `instance ${instance || "n/a"}`)];
}

function summaryCards() {
  const counts = {};
  for (const worker of state.workers.values()) counts[worker.status] = (counts[worker.status] || 0) + 1;
  const firing = [...state.firing.values()].reduce((n, alerts) => n + alerts.length, 0);
  const card = (n, label, extra = "") => el("div", { class: `card ${extra}` }, el("div", { class: "n", text: n }), el("div", { class: "l", text: label }));
  const shown = ["running", "stopped"];
  const other = state.workers.size - shown.reduce((n, s) => n + (counts[s] || 0), 0);
  const summary = state.summary;
  return el(
    "section",
    { class: "summary", "aria-label": "Fleet summary" },
    card(state.workers.size, "workers"),
    ...shown.map((s) => card(counts[s] || 0, s)),
    card(other, "other states (pending, stopping…)"),
    card(firing, "firing alerts", firing ? "alerting" : ""),
    summary ? card(summary.idle, "idle now", summary.idle ? "idle-now" : "") : null,
    summary ? card(summary.idle_hours.toFixed(1), "hours run idle") : null,
    summary ? card(summary.paused_hours.toFixed(1), "hours paused by auto-pause") : null,
  );
}

function renderFleet() {
  if (!onFleetPage()) return;
  const focused = document.activeElement && document.activeElement.id;
  const headers = COLUMNS.map(([key, label]) => {
    const sorted = state.sort.key === key ? (state.sort.dir > 0 ? "ascending" : "descending") : null;
    return el(
      "th",
      { scope: "col" },
      el("button", {
        type: "button", "aria-sort": sorted, text: label,
        onclick: () => {
          state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
          renderFleet();
        },
      }),
    );
  });
  const statuses = ["", "running", "pending", "stopping", "stopped", "shutting-down", "terminated", "unknown"];
  const rows = visibleWorkers();
  main.replaceChildren(
    el("h1", { text: "Fleet" }),
    summaryCards(),
    el(
      "div",
      { class: "tools" },
      el("input", {
        id: "filter", type: "search", placeholder: "Filter by name, instance or region", "aria-label": "Filter workers",
        value: state.filter,
        oninput: (event) => { state.filter = event.target.value; renderFleet(); },
      }),
      el(
        "select",
        { id: "status-filter", "aria-label": "Status", onchange: (event) => { state.statusFilter = event.target.value; renderFleet(); } },
        statuses.map((s) => el("option", { value: s, selected: s === state.statusFilter, text: s || "all statuses" })),
      ),
    ),
    el(
      "div",
      { class: "tablewrap" },
      el("table", { id: "fleet" }, el("thead", {}, el("tr", {}, headers)), el("tbody", {}, rows.map(workerRow))),
    ),
    el("p", { class: "muted", text: `${rows.length} of ${state.workers.size} workers shown` }),
  );
  if (focused) {
    const again = document.getElementById(focused);
    if (again) {
      again.focus();
      if (again.setSelectionRange && again.value !== undefined) again.setSelectionRange(again.value.length, again.value.length);
    }
  }
}

// -- worker page -----------------------------------------------------------------------------

const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };

const TICK_STEPS = [5, 10, 15, 30, 60, 180, 360, 720, 1440].map((m) => m * 60e3);

// The chosen range on the x-axis (not just the data's), threshold lines, gaps and stopped
// periods drawn as such, each point's value on hover.
function chart(items, since, until, thresholds) {
  const width = 800, height = 230, pad = 30;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "CPU and memory utilisation over time");
  const add = (name, attrs, parent = svg) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    parent.append(node);
    return node;
  };
  const t0 = since, t1 = Math.max(until, since + 1);
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (width - pad - 10);
  const y = (v) => height - pad - (v / 100) * (height - 2 * pad);
  for (const level of [0, 25, 50, 75, 100]) {
    add("line", { x1: pad, x2: width - 5, y1: y(level), y2: y(level), stroke: "#e4e7ec" });
    add("text", { x: 2, y: y(level) + 4, "font-size": 10, fill: "#667085" }).textContent = level;
  }
  const tick = TICK_STEPS.find((step) => (t1 - t0) / step <= 8) || 86400e3;
  const long = t1 - t0 > 2 * 86400e3;
  for (let t = Math.ceil(t0 / tick) * tick; t <= t1; t += tick) {
    add("line", { x1: x(t), x2: x(t), y1: pad, y2: height - pad, stroke: "#f1f3f5", class: "tickline" });
    add("text", { x: x(t), y: height - 10, "font-size": 10, fill: "#667085", "text-anchor": "middle", class: "tick" }).textContent =
      new Date(t).toLocaleString([], long ? { month: "short", day: "numeric" } : { hour: "2-digit", minute: "2-digit" });
  }
  const labels = [];
  const same = thresholds.cpu === thresholds.memory;
  const close = Math.abs(y(thresholds.cpu) - y(thresholds.memory)) < 12;
  for (const [value, color, name, key] of [[thresholds.cpu, "#2563eb", "CPU", "cpu"], [thresholds.memory, "#9333ea", "memory", "memory"]]) {
    add("line", { x1: pad, x2: width - 5, y1: y(value), y2: y(value), stroke: color, "stroke-dasharray": "4 4", opacity: 0.6, class: `threshold threshold-${key}` });
    if (same && key === "memory") continue; // one label says both
    const label = same ? `CPU and memory threshold ${value} %` : `${name} threshold ${value} %`;
    const below = close && !same && key === "memory"; // two near lines: one label above, one below
    labels.push([{ x: width - 8, y: below ? y(value) + 11 : y(value) - 3, "font-size": 9, fill: same ? "#475467" : color, "text-anchor": "end", class: `threshold-label-${key}` }, label]);
  }
  // Labels last, so no shading or line is drawn over them.
  const drawLabels = () => { for (const [attrs, text] of labels) add("text", attrs).textContent = text; };
  if (!items.length) {
    add("text", { x: width / 2 - 60, y: height / 2, fill: "#667085" }).textContent = "No data in this range yet";
    drawLabels();
    return svg;
  }
  const times = items.map((p) => Date.parse(p.timestamp));
  const spacings = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  const usual = spacings.length ? spacings[Math.floor(spacings.length / 2)] : 0;
  const gap = Math.max(usual * 2.5, 1);
  // Stopped periods: shaded, from a sample that was not running to the next sample.
  items.forEach((p, i) => {
    if (p.status && p.status !== "running") {
      const end = i + 1 < times.length ? times[i + 1] : Math.min(t1, times[i] + usual);
      add("rect", { x: x(times[i]), y: pad, width: Math.max(1, x(end) - x(times[i])), height: height - 2 * pad, fill: "#eef0f3", class: "stopped" });
    }
  });
  for (const [key, color, cls, name] of [["cpu_utilization", "#2563eb", "cpu", "CPU"], ["memory_utilization", "#9333ea", "mem", "memory"]]) {
    let segment = [];
    const segments = [segment];
    items.forEach((p, i) => {
      const v = p[key];
      const broken = v === null || v === undefined || (segment.length && times[i] - segment[segment.length - 1][0] > gap);
      if (broken && segment.length) segments.push((segment = []));
      if (v !== null && v !== undefined) segment.push([times[i], v]);
    });
    for (const part of segments.filter((points) => points.length)) {
      add("polyline", { points: part.map(([t, v]) => `${x(t)},${y(v)}`).join(" "), fill: "none", stroke: color, "stroke-width": 2, class: `line ${cls}` });
      for (const [t, v] of items.length <= 300 ? part : []) {
        const dot = add("circle", { cx: x(t), cy: y(v), r: 2.5, fill: color, class: `point ${cls}` });
        add("title", {}, dot).textContent = `${new Date(t).toLocaleString()}: ${name} ${v.toFixed(1)} %`;
      }
    }
  }
  drawLabels();
  return svg;
}

async function renderWorker(id) {
  let worker, history, alerts, actions;
  const until = new Date();
  const since = new Date(until - RANGES[state.range]);
  try {
    [worker, history, alerts, actions] = await Promise.all([
      api(`/api/workers/${id}`),
      api(`/api/workers/${id}/metrics?since=${since.toISOString()}&until=${until.toISOString()}`),
      api(`/api/alerts?worker_id=${id}&limit=100`),
      api(`/api/actions?worker_id=${id}&limit=20`),
    ]);
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken();
    main.replaceChildren(el("h1", { text: "Worker not found" }), el("p", {}, el("a", { href: "#/", text: "Back to the fleet" })));
    return;
  }
  if (location.hash !== `#/workers/${id}`) return;
  state.workers.set(worker.id, worker);
  const fact = (label, value) => el("div", { class: "card" }, el("div", { class: "l", text: label }), el("div", {}, value));
  const rangeButtons = Object.keys(RANGES).map((range) =>
    el("button", { type: "button", "aria-pressed": String(range === state.range), text: range, onclick: () => { state.range = range; renderWorker(id); } }),
  );
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/", text: "← Fleet" })),
    el("h1", {}, worker.name, " ", badge(worker.status)),
    el(
      "section",
      { class: "detail", "aria-label": "Worker details" },
      fact("Instance", `${worker.aws_instance_id} (${worker.aws_region})`),
      fact("Status checks", [badge(worker.ec2_system_status_check, `system ${worker.ec2_system_status_check || "n/a"}`), " ", badge(worker.ec2_instance_status_check, `instance ${worker.ec2_instance_status_check || "n/a"}`)]),
      fact("CPU", bar(worker.cpu_utilization, thresholdOf(worker, "cpu"))),
      fact("Memory", bar(worker.memory_utilization, thresholdOf(worker, "memory"))),
      fact("Running labs", String(worker.active_labs_count)),
      fact("Last collected", ago(worker.last_collected_at)),
      fact("CML controller", worker.cml_url ? el("a", { href: worker.cml_url, text: worker.cml_url, rel: "noopener" }) : "—"),
      fact("Next collection", worker.monitoring.next_run_at ? new Date(worker.monitoring.next_run_at).toLocaleTimeString() : "not monitored"),
    ),
    controllerSection(worker),
    scheduledEventsSection(worker),
    idleSection(worker, actions.items),
    monitoringSection(worker),
    el("h2", {}, "CPU and memory ", el("span", { class: "ranges", role: "group", "aria-label": "Range" }, rangeButtons)),
    el(
      "div",
      { class: "chart", id: "chart" },
      chart(history.items, since.getTime(), until.getTime(), { cpu: thresholdOf(worker, "cpu"), memory: thresholdOf(worker, "memory") }),
      el("p", { class: "legend" }, el("span", { class: "cpu", text: "■ CPU" }), "  ", el("span", { class: "mem", text: "■ memory" }),
        ` · ${history.items.length} points, ${history.step ? `${history.step / 60} min averages` : "every sample"} (${history.source})`),
    ),
    el("h2", { text: "Alerts" }),
    alerts.items.length
      ? el("div", { class: "tablewrap" }, el("table", {},
          el("thead", {}, el("tr", {}, ["Kind", "State", "Severity", "Value", "Detail", "Since", "Resolved"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, alerts.items.map((a) => el("tr", {},
            el("td", { text: KIND_NAMES[a.kind] || a.kind }),
            el("td", {}, badge(a.state), a.acknowledged_at ? [" ", badge("ok", "acknowledged")] : null),
            el("td", {}, badge(a.severity)),
            el("td", { text: a.value === null ? "—" : `${a.value.toFixed(1)}` }),
            el("td", { class: "detail-text", text: a.detail || "" }),
            el("td", { text: ago(a.fired_at || a.started_at) }), el("td", { text: a.resolved_at ? ago(a.resolved_at) : "—" }),
          )))))
      : el("p", { class: "muted", text: "No alerts for this worker." }),
  );
}

function controllerSection(worker) {
  if (!worker.cml_url) return el("p", { class: "muted", text: "No CML controller registered for this worker." });
  const cml = worker.cml;
  if (!cml) return el("section", { "aria-label": "CML controller" }, el("h2", { text: "CML controller" }), el("p", { class: "muted", text: "Not read yet." }));
  const fact = (label, value) => el("div", { class: "card" }, el("div", { class: "l", text: label }), el("div", {}, value));
  const show = (value) => (value === null || value === undefined ? "—" : String(value));
  const pair = (a, b) => `${show(a)} of ${show(b)}`;
  const [verdictClass, verdict] = cmlVerdict(worker);
  const expires = cml.license_expires_at ? new Date(cml.license_expires_at) : null;
  const computes = (cml.computes || []).map((c) =>
    el("li", {}, `${c.hostname || "?"} `, badge(c.healthy === false ? "error" : c.healthy ? "ok" : "n/a", c.healthy === false ? "unhealthy" : c.healthy ? "healthy" : "unknown"),
      " ", badge(c.admission_state === "READY" ? "ok" : "warning", c.admission_state || "n/a")));
  return el(
    "section",
    { "aria-label": "CML controller", id: "controller" },
    el("h2", {}, "CML controller ", badge(verdictClass, verdict)),
    el(
      "div",
      { class: "detail" },
      fact("Version", `${show(cml.version)}${cml.ready === false ? " (not ready)" : ""}`),
      fact("Health", [badge(cml.healthy === false ? "error" : cml.healthy ? "ok" : "n/a", cml.healthy === false ? "unhealthy" : cml.healthy ? "healthy" : "unknown"), el("ul", { class: "computes" }, computes)]),
      fact("Licence", [
        el("div", { text: `registration ${show(cml.license_registration)}, authorization ${show(cml.license_authorization)}` }),
        el("div", { class: "muted", text: expires ? `expires ${expires.toISOString().slice(0, 10)}` : "expiry unknown" }),
      ]),
      fact("Labs started", pair(cml.labs_started, cml.labs_total)),
      fact("Nodes running", pair(cml.running_nodes, cml.total_nodes)),
      fact("CPUs allocated", pair(cml.allocated_cpus, cml.cpu_count)),
      fact("Controller CPU", bar(cml.cpu_percent, 90)),
      fact("Controller memory", bar(cml.memory_used_percent, 90)),
      fact("Controller disk", bar(cml.disk_used_percent, 90)),
      fact("Read", `${ago(cml.collected_at)}${cml.reachable ? "" : " (unreachable now)"}`),
    ),
    cml.errors && cml.errors.length
      ? el("ul", { class: "errors", "aria-label": "What could not be read" }, cml.errors.map((e) => el("li", { class: "error", text: e })))
      : null,
  );
}

function idleSection(worker, actions) {
  const idle = worker.idle;
  const fact = (label, value) => el("div", { class: "card" }, el("div", { class: "l", text: label }), el("div", {}, value));
  const when = (iso) => (iso ? `${new Date(iso).toLocaleString()} (${ago(iso)})` : "—");
  const hours = (seconds) => `${(seconds / 3600).toFixed(1)} h`;
  const status = statusLine(worker.id, "action-status");
  const tell = (text) => say(worker.id, "action-status", text);
  const admin = state.role === "admin";
  const act = (kind) => el("button", {
    type: "button", class: "plain", id: `action-${kind}`, text: kind[0].toUpperCase() + kind.slice(1),
    onclick: async () => {
      tell(`${kind}…`);
      try {
        const done = await send(`/api/workers/${worker.id}/${kind}`, "POST");
        tell(`${kind}: ${done.result}${done.detail ? ` (${done.detail})` : ""}`);
        renderWorker(worker.id);
      } catch (error) {
        tell(`${kind} refused: ${error.message}`);
      }
    },
  });
  const toggle = el("input", {
    type: "checkbox", id: "auto-pause", checked: worker.auto_pause, disabled: !admin,
    onchange: async (event) => {
      try {
        await send(`/api/workers/${worker.id}`, "PATCH", { auto_pause: event.target.checked });
        tell(`auto-pause ${event.target.checked ? "on" : "off"} for this worker`);
      } catch (error) {
        event.target.checked = !event.target.checked;
        tell(`could not change auto-pause: ${error.message}`);
      }
    },
  });
  return el(
    "section",
    { "aria-label": "Idle and actions", id: "idle" },
    el("h2", {}, "Idle and actions ", badge(idle.idle ? "warning" : "ok", idle.idle ? "idle" : "in use")),
    el(
      "div",
      { class: "detail" },
      fact("Idle since", when(idle.idle_since)),
      fact("Last user activity", when(idle.last_user_activity_at)),
      fact("Auto-pause at", when(idle.pause_at)),
      fact("Snoozed until", when(idle.snoozed_until)),
      fact("Hours running / idle / paused", `${hours(idle.running_seconds)} / ${hours(idle.idle_seconds)} / ${hours(idle.paused_seconds)}`),
      fact("Auto-pause", el("label", {}, toggle, " this worker may be paused when idle")),
    ),
    admin ? el("p", { class: "actions" }, act("stop"), " ", act("start"), " ", act("reboot")) : null,
    status,
    actions.length
      ? el("div", { class: "tablewrap" }, el("table", { id: "actions" },
          el("thead", {}, el("tr", {}, ["Action", "Reason", "By", "Result", "Detail", "Asked"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, actions.map((a) => el("tr", {},
            el("td", { text: a.kind }), el("td", { text: a.reason }), el("td", { text: a.actor }),
            el("td", {}, badge(a.result === "ok" ? "ok" : a.result === "failed" ? "error" : "warning", a.result)),
            el("td", { class: "detail-text", text: a.detail || "" }), el("td", { text: ago(a.requested_at) }),
          )))))
      : el("p", { class: "muted", text: "No stop, start or reboot recorded for this worker." }),
  );
}

// Thresholds (a worker's own, or the fleet's when left empty) and an immediate collection.
function monitoringSection(worker) {
  const admin = state.role === "admin";
  const policy = (state.summary || {}).policy || {};
  const status = statusLine(worker.id, "settings-status");
  const tell = (text) => say(worker.id, "settings-status", text);
  const field = (key, label) => el(
    "label", { class: "field" }, `${label} `,
    el("input", {
      id: `threshold-${key}`, type: "number", min: 0, max: 100, step: "any", inputmode: "decimal",
      value: worker[`${key}_threshold`] ?? "", placeholder: `${policy[`${key}_threshold`] ?? 90} (fleet)`,
      disabled: !admin, "aria-describedby": "threshold-help",
    }),
    " %",
  );
  const save = async (event) => {
    event.preventDefault();
    const body = {};
    for (const key of ["cpu", "memory"]) {
      const raw = $(`#threshold-${key}`).value.trim();
      body[`${key}_threshold`] = raw === "" ? null : Number(raw);
    }
    try {
      const saved = await send(`/api/workers/${worker.id}`, "PATCH", body);
      state.workers.set(saved.id, saved);
      tell(`thresholds saved: CPU ${thresholdOf(saved, "cpu")} %, memory ${thresholdOf(saved, "memory")} %`);
      renderWorker(worker.id);
    } catch (error) {
      tell(`thresholds not saved: ${error.message}`);
    }
  };
  const collect = async () => {
    state.awaitingCollection = worker.id;
    try {
      await send(`/api/workers/${worker.id}/refresh`, "POST");
      if (state.awaitingCollection === worker.id) tell("collection asked; this page updates when it is done");
    } catch (error) {
      state.awaitingCollection = null;
      tell(`collect refused: ${error.message}`);
    }
  };
  return el(
    "section",
    { "aria-label": "Thresholds and collection", id: "monitoring" },
    el("h2", { text: "Thresholds and collection" }),
    el(
      "form",
      // The API checks and names what is wrong (one message for every client): no browser bubble.
      { id: "thresholds", class: "tools", novalidate: true, onsubmit: save },
      field("cpu", "CPU above"), field("memory", "Memory above"),
      admin ? el("button", { type: "submit", class: "plain", id: "save-thresholds", text: "Save thresholds" }) : null,
      admin ? el("button", { type: "button", class: "plain", id: "collect-now", text: "Collect now", onclick: collect }) : null,
    ),
    el("p", { id: "threshold-help", class: "muted", text: "Empty: the fleet's threshold applies. A CPU or memory alert fires while the worker stays above its threshold." }),
    status,
  );
}

function scheduledEventsSection(worker) {
  const events = worker.ec2_scheduled_events || [];
  if (!events.length) return document.createDocumentFragment();
  return el(
    "section",
    { "aria-label": "EC2 scheduled events", id: "scheduled-events" },
    el("h2", { text: "EC2 scheduled events" }),
    el("ul", {}, events.map((e) => el("li", {}, badge("warning", e.code), ` ${e.description || ""} — from ${e.not_before ? new Date(e.not_before).toUTCString() : "?"}`))),
  );
}

// -- alerts page -----------------------------------------------------------------------------

const SILENCE_HOURS = [1, 4, 24, 168];

async function renderAlerts() {
  const filter = state.alertFilter;
  const query = new URLSearchParams({ limit: "500" });
  if (filter.state) query.set("state", filter.state);
  if (filter.kind) query.set("kind", filter.kind);
  let alerts, silences;
  try {
    [alerts, silences] = await Promise.all([api(`/api/alerts?${query}`), api("/api/silences?active=true")]);
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken();
    main.replaceChildren(el("p", { class: "error", text: `Could not load the alerts: ${error.message}` }));
    return;
  }
  if (location.hash !== "#/alerts") return;
  const admin = state.role === "admin";
  const status = el("p", { id: "alert-status", role: "status", class: "muted", text: state.alertStatus || "" });
  const comment = el("input", { id: "alert-comment", type: "text", placeholder: "Comment (for an ack or a silence)", "aria-label": "Comment", maxlength: 1024 });
  const hours = el("select", { id: "silence-hours", "aria-label": "Silence for" }, SILENCE_HOURS.map((h) => el("option", { value: h, text: h < 24 ? `${h} h` : `${h / 24} d` })));
  const workerName = (id) => (state.workers.get(id) || {}).name || id.slice(0, 8);
  const run = async (what, call) => {
    try {
      await call();
      state.alertStatus = `${what}: done`;
      await loadFiring();
      await renderAlerts();
    } catch (error) {
      status.textContent = state.alertStatus = `${what} refused: ${error.message}`;
    }
  };
  const silence = (body, what) => run(what, () => send("/api/silences", "POST", {
    ...body, ends_at: new Date(Date.now() + Number(hours.value) * 3600e3).toISOString(),
    comment: comment.value.trim() || `silenced from the dashboard`,
  }));
  const rows = alerts.items.map((a) => el(
    "tr",
    { "data-alert": a.id },
    el("td", { text: KIND_NAMES[a.kind] || a.kind }),
    el("td", {}, el("a", { href: `#/workers/${a.worker_id}`, text: workerName(a.worker_id) })),
    el("td", {}, badge(a.state), a.acknowledged_at ? [" ", badge("ok", "acknowledged")] : null),
    el("td", {}, badge(a.severity)),
    el("td", { text: a.value === null ? "—" : a.value.toFixed(1) }),
    el("td", { class: "detail-text", text: [a.detail, a.acknowledged_comment && `ack: ${a.acknowledged_comment}`].filter(Boolean).join(" · ") }),
    el("td", { text: ago(a.fired_at || a.started_at) }),
    el("td", {}, admin ? [
      a.state !== "resolved" && !a.acknowledged_at
        ? el("button", { type: "button", class: "plain ack", text: "Ack", onclick: () => run("ack", () => send(`/api/alerts/${a.id}/ack`, "POST", { comment: comment.value.trim() || null })) })
        : null,
      " ",
      el("button", { type: "button", class: "plain silence-worker", text: "Silence worker", onclick: () => silence({ worker_id: a.worker_id }, "silence worker") }),
      " ",
      el("button", { type: "button", class: "plain silence-kind", text: "Silence kind", onclick: () => silence({ kind: a.kind }, "silence kind") }),
    ] : null),
  ));
  const silenceRows = silences.items.map((s) => el(
    "tr",
    { "data-silence": s.id },
    el("td", { text: s.worker_id ? workerName(s.worker_id) : "every worker" }),
    el("td", { text: s.kind ? KIND_NAMES[s.kind] || s.kind : "every kind" }),
    el("td", { text: new Date(s.ends_at).toLocaleString() }),
    el("td", { class: "detail-text", text: s.comment }),
    el("td", {}, admin ? el("button", { type: "button", class: "plain end-silence", text: "End now", onclick: () => run("end silence", () => send(`/api/silences/${s.id}`, "DELETE")) }) : null),
  ));
  main.replaceChildren(
    el("h1", { text: "Alerts" }),
    el(
      "div",
      { class: "tools" },
      el("select", { id: "alert-state", "aria-label": "State", onchange: (e) => { filter.state = e.target.value; renderAlerts(); } },
        ["firing", "pending", "resolved", ""].map((v) => el("option", { value: v, selected: v === filter.state, text: v || "every state" }))),
      el("select", { id: "alert-kind", "aria-label": "Kind", onchange: (e) => { filter.kind = e.target.value; renderAlerts(); } },
        ["", ...Object.keys(KIND_NAMES)].map((v) => el("option", { value: v, selected: v === filter.kind, text: v ? KIND_NAMES[v] : "every kind" }))),
      admin ? [comment, hours] : null,
    ),
    status,
    alerts.items.length
      ? el("div", { class: "tablewrap" }, el("table", { id: "alerts" },
          el("thead", {}, el("tr", {}, ["Kind", "Worker", "State", "Severity", "Value", "Detail", "Since", ""].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, rows)))
      : el("p", { class: "muted", text: "No alert matches." }),
    el("h2", { text: "Silences in force" }),
    silences.items.length
      ? el("div", { class: "tablewrap" }, el("table", { id: "silences" },
          el("thead", {}, el("tr", {}, ["Worker", "Kind", "Until", "Comment", ""].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, silenceRows)))
      : el("p", { class: "muted", text: "No silence in force." }),
  );
}

// -- actions page ----------------------------------------------------------------------------

const REASONS = { idle: "idle (auto-pause)", status_check_impaired: "status check impaired (remediation)", manual: "by hand" };
const RESULT_CLASS = { ok: "ok", failed: "error", pending: "warning", dry_run: "n/a", skipped: "n/a" };

function policyLine(policy) {
  if (!policy) return "";
  const pause = policy.auto_pause_enabled ? (policy.auto_pause_dry_run ? "on, dry run (recorded, not done)" : "on") : "off";
  return `Fleet-wide: auto-pause ${pause}; remediation of impaired workers ${policy.remediation_enabled ? "on" : "off"}.`;
}

async function renderActions() {
  const filter = state.actionFilter;
  const query = new URLSearchParams({ limit: "500" });
  if (filter.kind) query.set("kind", filter.kind);
  if (filter.result) query.set("result", filter.result);
  let actions, summary;
  try {
    [actions, summary] = await Promise.all([api(`/api/actions?${query}`), api("/api/fleet/summary")]);
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken();
    main.replaceChildren(el("p", { class: "error", text: `Could not load the actions: ${error.message}` }));
    return;
  }
  if (location.hash !== "#/actions") return;
  state.summary = summary;
  const workerName = (id) => (state.workers.get(id) || {}).name || id.slice(0, 8);
  const card = (n, label, extra = "") => el("div", { class: `card ${extra}` }, el("div", { class: "n", text: n }), el("div", { class: "l", text: label }));
  const failed = actions.items.filter((a) => a.result === "failed").length;
  const rows = actions.items.map((a) => el(
    "tr",
    { "data-action": a.id },
    el("td", {}, el("a", { href: `#/workers/${a.worker_id}`, text: workerName(a.worker_id) })),
    el("td", { text: a.kind }),
    el("td", { text: REASONS[a.reason] || a.reason }),
    el("td", { text: a.actor }),
    el("td", {}, badge(RESULT_CLASS[a.result] || "n/a", a.result.replace("_", " "))),
    el("td", { class: "detail-text", text: a.detail || "" }),
    el("td", { title: a.requested_at, text: ago(a.requested_at) }),
    el("td", { title: a.finished_at || "", text: a.finished_at ? ago(a.finished_at) : "—" }),
  ));
  main.replaceChildren(
    el("h1", { text: "Actions" }),
    el("p", { id: "policy", class: "muted", text: policyLine(summary.policy) }),
    el(
      "section",
      { class: "summary", "aria-label": "Actions summary" },
      card(summary.idle, "idle now", summary.idle ? "idle-now" : ""),
      card(summary.idle_hours.toFixed(1), "hours run idle"),
      card(summary.paused_hours.toFixed(1), "hours paused by auto-pause"),
      card(actions.items.length, "actions listed"),
      card(failed, "failed", failed ? "alerting" : ""),
    ),
    el(
      "div",
      { class: "tools" },
      el("select", { id: "action-kind", "aria-label": "Action", onchange: (e) => { filter.kind = e.target.value; renderActions(); } },
        ["", "stop", "start", "reboot"].map((v) => el("option", { value: v, selected: v === filter.kind, text: v || "every action" }))),
      el("select", { id: "action-result", "aria-label": "Result", onchange: (e) => { filter.result = e.target.value; renderActions(); } },
        ["", "pending", "ok", "failed", "dry_run", "skipped"].map((v) => el("option", { value: v, selected: v === filter.result, text: v ? v.replace("_", " ") : "every result" }))),
    ),
    actions.items.length
      ? el("div", { class: "tablewrap" }, el("table", { id: "fleet-actions" },
          el("thead", {}, el("tr", {}, ["Worker", "Action", "Reason", "By", "Result", "Detail", "Asked", "Finished"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, rows)))
      : el("p", { class: "muted", text: "No stop, start or reboot matches." }),
  );
}

// -- live updates ----------------------------------------------------------------------------

function applyEvent(event) {
  const worker = state.workers.get(event.worker_id);
  if (!worker) return;
  Object.assign(worker, {
    status: event.status,
    cpu_utilization: event.metrics.cpu_utilization,
    memory_utilization: event.metrics.memory_utilization,
    ec2_instance_state: event.ec2.instance_state,
    ec2_system_status_check: event.ec2.system_status,
    ec2_instance_status_check: event.ec2.instance_status,
    active_labs_count: event.active_labs_count,
    last_collected_at: event.timestamp,
    cml: event.cml,
    ec2_scheduled_events: event.ec2_scheduled_events || [],
    idle: event.idle || worker.idle,
    auto_pause: event.auto_pause,
  });
  const row = document.querySelector(`tr[data-worker="${worker.id}"]`);
  if (row) row.replaceWith(workerRow(worker));
  if (location.hash === `#/workers/${worker.id}`) {
    if (state.awaitingCollection === worker.id) {
      state.awaitingCollection = null;
      say(worker.id, "settings-status", `collected at ${new Date(event.timestamp).toLocaleTimeString()}`);
    }
    rerenderSoon();
  }
  refreshAlertsSoon();
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
      const response = await fetch("/api/events", { headers });
      if (response.status === 401) return askForToken();
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
      // reconnect below
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
    main.replaceChildren(el("p", { class: "error", text: `Could not load the fleet: ${error.message}` }));
    return;
  }
  await route();
  if (!streaming) {
    streaming = true;
    streamEvents();
  }
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(refresh, 30000);
}

window.addEventListener("hashchange", () => { route(); main.focus(); });

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
