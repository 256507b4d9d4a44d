// CML Worker Monitor dashboard — The alerts page: filter, work an alert (acknowledge or silence
// with a chosen scope, in a per-row dialog), and the silences in force.
import {
  acknowledgement, alertDetail, alertValue, openAlertDialog, silenceMarker, silencedUntil,
} from "./alertwork.js";
import {
  KIND_NAMES, ago, alertSubject, api, badge, drawPage, el, loadPage, say, send, state, statusLine, workerName,
} from "./core.js";
import { loadFiring } from "./fleet.js";

export async function renderAlerts() {
  const filter = state.alertFilter;
  const query = new URLSearchParams({ limit: "500" });
  if (filter.state) query.set("state", filter.state);
  if (filter.kind) query.set("kind", filter.kind);
  const loaded = await loadPage("#/alerts", (error) => [el("p", { class: "error", text: `Could not load the alerts: ${error.message}` })],
    [api(`/api/alerts?${query}`), api("/api/silences")]);
  if (!loaded) return;
  const [alerts, allSilences] = loaded;
  const silences = { items: allSilences.items.filter((s) => Date.parse(s.ends_at) > Date.now()) }; // in force or to come
  const admin = state.role === "admin";
  const status = statusLine("alerts", "alert-status");
  const after = async (message) => {
    say("alerts", "alert-status", message);
    await loadFiring().catch(() => {});
    await renderAlerts();
  };
  const rows = alerts.items.map((a) => { const marker = silenceMarker(silencedUntil(a, silences.items)); return el(
    "tr",
    { "data-alert": a.id },
    el("td", { class: "alert-main" },
      el("div", { class: "kind", text: KIND_NAMES[a.kind] || a.kind }),
      a.worker_id ? el("a", { href: `#/workers/${a.worker_id}`, text: workerName(a.worker_id) }) : el("span", { text: alertSubject(a) }),
      admin ? el("div", {}, el("button", {
        type: "button", class: "plain work", text: "Acknowledge or silence…", "aria-label": `Acknowledge or silence ${KIND_NAMES[a.kind] || a.kind} on ${alertSubject(a)}`,
        onclick: () => openAlertDialog({ alert: a, done: after }),
      })) : null),
    el("td", { class: "state" }, badge(a.state), " ", badge(a.severity), marker ? [" ", marker] : null),
    el("td", { class: "value", text: alertValue(a) }),
    el("td", { class: "detail-text" }, el("div", { text: alertDetail(a) }), acknowledgement(a)),
    el("td", { text: ago(a.fired_at || a.started_at) }),
  ); });
  const silenceRows = silences.items.map((s) => el(
    "tr",
    { "data-silence": s.id },
    el("td", { text: s.worker_id ? workerName(s.worker_id) : "every worker" }),
    el("td", { text: s.kind ? KIND_NAMES[s.kind] || s.kind : "every kind" }),
    el("td", { text: `${s.active ? "" : `from ${new Date(s.starts_at).toLocaleString()} `}until ${new Date(s.ends_at).toLocaleString()}` }),
    el("td", { class: "detail-text", text: s.comment }),
    el("td", {}, admin ? el("button", { type: "button", class: "plain end-silence", text: "End now", onclick: async () => {
      try {
        await send(`/api/silences/${s.id}`, "DELETE");
        await after("end silence: done");
      } catch (error) {
        say("alerts", "alert-status", `end silence refused: ${error.message}`);
      }
    } }) : null),
  ));
  drawPage(
    el("h1", { text: "Alerts" }),
    el(
      "div",
      { class: "tools" },
      el("select", { id: "alert-state", "aria-label": "State", onchange: (e) => { filter.state = e.target.value; renderAlerts(); } },
        ["firing", "pending", "resolved", ""].map((v) => el("option", { value: v, selected: v === filter.state, text: v || "every state" }))),
      el("select", { id: "alert-kind", "aria-label": "Kind", onchange: (e) => { filter.kind = e.target.value; renderAlerts(); } },
        ["", ...Object.keys(KIND_NAMES)].map((v) => el("option", { value: v, selected: v === filter.kind, text: v ? KIND_NAMES[v] : "every kind" }))),
    ),
    status,
    alerts.items.length
      ? el("div", { class: "tablewrap" }, el("table", { id: "alerts", class: "stack" },
          el("thead", {}, el("tr", {}, ["Alert", "State", "Value", "Detail", "Since"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, rows)))
      : el("p", { class: "muted", text: "No alert matches." }),
    el("h2", { text: "Silences in force or to come" }),
    silences.items.length
      ? el("div", { class: "tablewrap" }, el("table", { id: "silences" },
          el("thead", {}, el("tr", {}, ["Worker", "Kind", "When", "Comment", ""].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, silenceRows)))
      : el("p", { class: "muted", text: "No silence in force or to come." }),
  );
}
