// CML Worker Monitor dashboard — A worker page: details, CML controller, idle state and actions, thresholds, chart, alerts.
import {
  acknowledgement, alertDetail, alertValue, openAlertDialog, silenceMarker, silencedUntil,
} from "./alertwork.js";
import { RANGES, chart } from "./chart.js";
import { confirmAction } from "./confirm_action.js";
import {
  $, KIND_NAMES, ago, api, badge, bar, drawPage, el, fact, loadPage, say, send, state, statusLine, thresholdOf,
} from "./core.js";
import { cmlVerdict } from "./fleet.js";
import { manageWorkerSection } from "./manage.js";

const SOURCE_NAMES = { raw: "samples", hourly: "hourly roll-up", "hourly+raw": "hourly roll-up, then samples for the latest hours" };

// Where the worker's CPU and memory come from: the controller's own figures, or CloudWatch's.
function metricsSource(worker) {
  return worker.metrics_source === "controller" ? "CML controller" : "EC2 via CloudWatch";
}

// Which action the instance's state allows (as the API decides): others are shown disabled.
const ACTION_FROM = { stop: ["running", "pending"], start: ["stopped"], reboot: ["running"] };

export async function renderWorker(id) {
  const until = new Date();
  const since = new Date(until - RANGES[state.range]);
  const loaded = await loadPage(`#/workers/${id}`, () => [el("h1", { text: "Worker not found" }), el("p", {}, el("a", { href: "#/", text: "Back to the fleet" }))], [
    api(`/api/workers/${id}`),
    api(`/api/workers/${id}/metrics?since=${since.toISOString()}&until=${until.toISOString()}`),
    api(`/api/alerts?worker_id=${id}&limit=100`),
    api(`/api/actions?worker_id=${id}&limit=20`),
    api("/api/silences"),
  ]);
  if (!loaded) return;
  const [worker, history, alerts, actions, silences] = loaded;
  state.workers.set(worker.id, worker);
  const rangeButtons = Object.keys(RANGES).map((range) =>
    el("button", { type: "button", "aria-pressed": String(range === state.range), text: range, onclick: () => { state.range = range; renderWorker(id); } }),
  );
  drawPage(
    el("p", {}, el("a", { href: "#/", text: "← Fleet" })),
    el("h1", {}, worker.name, " ", badge(worker.status)),
    el(
      "section",
      { class: "detail", "aria-label": "Worker details" },
      fact("Instance", `${worker.aws_instance_id} (${worker.aws_region})`),
      fact("Status checks", [badge(worker.ec2_system_status_check, `system ${worker.ec2_system_status_check || "n/a"}`), " ", badge(worker.ec2_instance_status_check, `instance ${worker.ec2_instance_status_check || "n/a"}`)]),
      fact(`CPU (${metricsSource(worker)})`, bar(worker.cpu_utilization, thresholdOf(worker, "cpu"))),
      fact(`Memory (${metricsSource(worker)})`, bar(worker.memory_utilization, thresholdOf(worker, "memory"))),
      fact("Running labs", String(worker.active_labs_count)),
      fact("Last collected", ago(worker.last_collected_at)),
      fact("CML controller", worker.cml_url ? el("a", { href: worker.cml_url, text: worker.cml_url, rel: "noopener" }) : "—"),
      fact("Next collection", worker.monitoring.next_run_at
        ? el("span", { id: "next-collection", title: new Date(worker.monitoring.next_run_at).toLocaleString(), text: ago(worker.monitoring.next_run_at) })
        : "not monitored"),
    ),
    el("p", { class: "legend", id: "bar-legend" }, "Bars: ", el("span", { class: "swatch ok" }), " below 75 % · ",
      el("span", { class: "swatch warn" }), " 75 % and above · ", el("span", { class: "swatch bad" }), " above the alert threshold"),
    controllerSection(worker),
    scheduledEventsSection(worker),
    idleSection(worker, actions.items),
    monitoringSection(worker),
    manageWorkerSection(worker, () => renderWorker(worker.id)),
    el("h2", {}, "CPU and memory ", el("span", { class: "ranges", role: "group", "aria-label": "Range" }, rangeButtons)),
    el(
      "div",
      { class: "chart", id: "chart" },
      chart(history.items, since.getTime(), until.getTime(), { cpu: thresholdOf(worker, "cpu"), memory: thresholdOf(worker, "memory") }),
      el("p", { class: "legend", id: "chart-legend" }, el("span", { class: "cpu", text: "■ CPU" }), "  ", el("span", { class: "mem", text: "■ memory" }),
        " · ", el("span", { class: "swatch stopped" }), " not running", " · - - - alert thresholds",
        ` · ${history.items.length} points, ${history.step ? `${history.step / 60} min averages` : "every sample"} (${SOURCE_NAMES[history.source] || history.source})`),
    ),
    workerAlertsSection(worker, alerts.items, silences.items),
  );
}

// The worker's alerts (value with unit and threshold, detail, who acknowledged, silence marker),
// the silences that cover it now or later, and (admins) silencing it ahead of maintenance.
function workerAlertsSection(worker, alerts, allSilences) {
  const admin = state.role === "admin";
  const silences = allSilences.filter((s) => Date.parse(s.ends_at) > Date.now() && (!s.worker_id || s.worker_id === worker.id));
  const mine = silences.filter((s) => s.worker_id === worker.id);
  const status = statusLine(worker.id, "silence-status");
  const after = (message) => { say(worker.id, "silence-status", message); renderWorker(worker.id); };
  return el(
    "section",
    { "aria-label": "Alerts", id: "worker-alerts" },
    el("h2", { text: "Alerts" }),
    admin ? el("p", {}, el("button", { type: "button", class: "plain", id: "silence-worker", text: "Silence this worker…",
      onclick: () => openAlertDialog({ worker, done: after }) })) : null,
    status,
    mine.length
      ? el("ul", { id: "worker-silences" }, mine.map((s) => el("li", {}, silenceMarker(s.ends_at),
          ` ${s.kind ? KIND_NAMES[s.kind] || s.kind : "every alert"}${s.active ? "" : `, from ${new Date(s.starts_at).toLocaleString()}`} — ${s.comment}`)))
      : null,
    alerts.length
      ? el("div", { class: "tablewrap" }, el("table", { id: "worker-alerts-table" },
          el("thead", {}, el("tr", {}, ["Kind", "State", "Value", "Detail", "Since", "Resolved"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, alerts.map((a) => {
            const marker = a.state === "resolved" ? null : silenceMarker(silencedUntil(a, silences));
            return el("tr", {},
              el("td", { text: KIND_NAMES[a.kind] || a.kind }),
              el("td", {}, badge(a.state), " ", badge(a.severity), marker ? [" ", marker] : null),
              el("td", { text: alertValue(a) }),
              el("td", { class: "detail-text" }, el("div", { text: alertDetail(a) }), acknowledgement(a)),
              el("td", { text: ago(a.fired_at || a.started_at) }), el("td", { text: a.resolved_at ? ago(a.resolved_at) : "—" }));
          }))))
      : el("p", { class: "muted", text: "No alerts for this worker." }),
  );
}

function controllerSection(worker) {
  if (!worker.cml_url) return el("p", { class: "muted", text: "No CML controller registered for this worker." });
  const cml = worker.cml;
  if (!cml) return el("section", { "aria-label": "CML controller" }, el("h2", { text: "CML controller" }), el("p", { class: "muted", text: "Not read yet." }));
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

// "idle" or "in use" only mean something for a running worker; otherwise its state says it.
function idleBadge(worker) {
  if (worker.status !== "running") return badge(worker.status, worker.status === "stopped" && worker.idle.paused_by_us ? "paused" : worker.status);
  return el("span", { id: "idle-state" }, badge(worker.idle.idle ? "warning" : "ok", worker.idle.idle ? "idle" : "in use"));
}

function idleSection(worker, actions) {
  const idle = worker.idle;
  const when = (iso) => (iso ? `${new Date(iso).toLocaleString()} (${ago(iso)})` : "—");
  const hours = (seconds) => `${(seconds / 3600).toFixed(1)} h`;
  const status = statusLine(worker.id, "action-status");
  const tell = (text) => say(worker.id, "action-status", text);
  const admin = state.role === "admin";
  const instanceState = worker.ec2_instance_state || "unknown";
  const act = (kind) => el("button", {
    type: "button", class: "plain", id: `action-${kind}`, text: kind[0].toUpperCase() + kind.slice(1),
    disabled: !ACTION_FROM[kind].includes(instanceState),
    title: ACTION_FROM[kind].includes(instanceState) ? `${kind} ${worker.name}` : `${worker.name} is ${instanceState}: it cannot be ${kind === "stop" ? "stopped" : kind === "start" ? "started" : "rebooted"} now`,
    onclick: async () => {
      const choice = await confirmAction(worker, kind);
      if (!choice) return tell(`${kind} cancelled`);
      tell(`${kind} ${worker.name}…`);
      try {
        const done = await send(`/api/workers/${worker.id}/${kind}`, "POST", choice);
        tell(`${kind}: ${done.result}${done.detail ? ` (${done.detail})` : ""}`);
        renderWorker(worker.id);
      } catch (error) {
        tell(`${kind} refused: ${error.message.replaceAll(worker.id, worker.name)}`);
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
    el("h2", {}, "Idle and actions ", idleBadge(worker)),
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
