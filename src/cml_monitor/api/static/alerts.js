// CML Worker Monitor dashboard — The alerts page: filter, acknowledge, silence, and the silences in force.
// Plain scripts sharing one global scope (core.js first, main.js last): no build step, nothing
// fetched from the internet.
"use strict";

const SILENCE_HOURS = [1, 4, 24, 168];

async function renderAlerts() {
  const filter = state.alertFilter;
  const query = new URLSearchParams({ limit: "500" });
  if (filter.state) query.set("state", filter.state);
  if (filter.kind) query.set("kind", filter.kind);
  const loaded = await loadPage("#/alerts", (error) => [el("p", { class: "error", text: `Could not load the alerts: ${error.message}` })],
    [api(`/api/alerts?${query}`), api("/api/silences?active=true")]);
  if (!loaded) return;
  const [alerts, silences] = loaded;
  const admin = state.role === "admin";
  const status = statusLine("alerts", "alert-status");
  const comment = el("input", { id: "alert-comment", type: "text", placeholder: "Comment (for an ack or a silence)", "aria-label": "Comment", maxlength: 1024 });
  const hours = el("select", { id: "silence-hours", "aria-label": "Silence for" }, SILENCE_HOURS.map((h) => el("option", { value: h, text: h < 24 ? `${h} h` : `${h / 24} d` })));
  const run = async (what, call) => {
    try {
      await call();
      say("alerts", "alert-status", `${what}: done`);
      await loadFiring();
      await renderAlerts();
    } catch (error) {
      say("alerts", "alert-status", `${what} refused: ${error.message}`);
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
    el("td", {}, a.worker_id ? el("a", { href: `#/workers/${a.worker_id}`, text: workerName(a.worker_id) }) : `region ${a.region}`),
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
      a.worker_id ? el("button", { type: "button", class: "plain silence-worker", text: "Silence worker", onclick: () => silence({ worker_id: a.worker_id }, "silence worker") }) : null,
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
  drawPage(
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
