// CML Worker Monitor dashboard — The fleet page: summary cards and the sortable, filterable table of workers.
import {
  KIND_NAMES, ago, api, badge, bar, card, drawPage, el, main, onFleetPage, state, thresholdOf,
} from "./core.js";
import { managePanel } from "./manage.js";
import { showWho } from "./signin.js";

// What says whether a worker is well comes first: on a phone it fits without scrolling, and
// the rest (checks, when, where) is a sideways scroll away.
const COLUMNS = [
  ["name", "Name"], ["status", "Status"], ["alerts", "Alerts"], ["cpu_utilization", "CPU"],
  ["memory_utilization", "Memory"], ["active_labs_count", "Labs"], ["cml", "CML"], ["checks", "Checks"],
  ["last_collected_at", "Collected"], ["aws_region", "Region"], ["aws_instance_id", "Instance"],
];

// What the controller's state comes to, in one word (and the badge class that colours it).
export function cmlVerdict(worker) {
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

export async function loadFiring() {
  const alerts = await api("/api/alerts?state=firing&limit=1000");
  state.firing = new Map();
  for (const alert of alerts.items) {
    const firing = state.firing.get(alert.worker_id) || [];
    firing.push({ kind: alert.kind, acknowledged: Boolean(alert.acknowledged_at) });
    state.firing.set(alert.worker_id, firing);
  }
}

export async function loadFleet() {
  const workers = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api(`/api/workers?limit=1000&offset=${offset}`);
    workers.push(...page.items);
    if (workers.length >= page.total || page.items.length === 0) break;
  }
  state.workers = new Map(workers.map((w) => [w.id, w]));
  const [me, summary] = await Promise.all([api("/api/me"), api("/api/fleet/summary"), loadFiring()]);
  state.role = me.role;
  state.subject = me.subject;
  state.summary = summary;
  showWho();
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

export function workerRow(worker) {
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

export function renderFleet() {
  if (!onFleetPage()) return;
  // What had focus inside the page (the filter, say) gets it back after the redraw; `main`
  // itself is not "inside", and focusing it again would scroll the header out of view.
  const active = document.activeElement;
  const focused = active && active !== main && main.contains(active) && active.id;
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
  drawPage(
    el("h1", { text: "Fleet" }),
    summaryCards(),
    managePanel(renderFleet, loadFleet),
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
      again.focus({ preventScroll: true });
      if (again.setSelectionRange && again.value !== undefined) again.setSelectionRange(again.value.length, again.value.length);
    }
  }
}
