// CML Worker Monitor dashboard — The actions page: every stop, start and reboot of the fleet, and the fleet's policy.
import { ago, api, badge, card, drawPage, el, loadPage, state, workerName } from "./core.js";

const REASONS = { idle: "idle (auto-pause)", status_check_impaired: "status check impaired (remediation)", manual: "by hand" };
const RESULT_CLASS = { ok: "ok", failed: "error", pending: "warning", dry_run: "n/a", skipped: "n/a" };

function policyLine(policy) {
  if (!policy) return "";
  const pause = policy.auto_pause_enabled ? (policy.auto_pause_dry_run ? "on, dry run (recorded, not done)" : "on") : "off";
  return `Fleet-wide: auto-pause ${pause}; remediation of impaired workers ${policy.remediation_enabled ? "on" : "off"}.`;
}

export async function renderActions() {
  const filter = state.actionFilter;
  const query = new URLSearchParams({ limit: "500" });
  if (filter.kind) query.set("kind", filter.kind);
  if (filter.result) query.set("result", filter.result);
  const loaded = await loadPage("#/actions", (error) => [el("p", { class: "error", text: `Could not load the actions: ${error.message}` })],
    [api(`/api/actions?${query}`), api("/api/fleet/summary")]);
  if (!loaded) return;
  const [actions, summary] = loaded;
  state.summary = summary;
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
  drawPage(
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
