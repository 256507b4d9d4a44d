// CML Worker Monitor dashboard — Working an alert: what it says (value, threshold, detail, who
// acknowledged, which silence covers it) and the dialog that acknowledges it or silences it
// with an explicit scope. The worker page uses the same dialog to silence a worker ahead of
// maintenance.
import { KIND_NAMES, ago, alertSubject, el, send, workerName } from "./core.js";

const SILENCE_DURATIONS = [[1, "1 hour"], [4, "4 hours"], [8, "8 hours"], [24, "1 day"], [72, "3 days"], [168, "1 week"]];
const PERCENT_KINDS = new Set(["cpu", "memory", "disk"]);

// "96.0 % > 90 %" for a usage alert, "3 days left (warning at 14)" for a licence, "—" otherwise.
export function alertValue(a) {
  if (a.value === null || a.value === undefined) return "—";
  if (PERCENT_KINDS.has(a.kind)) {
    return a.threshold === null || a.threshold === undefined ? `${a.value.toFixed(1)} %` : `${a.value.toFixed(1)} % > ${a.threshold} %`;
  }
  if (a.kind === "license") return `${a.value} days left${a.threshold !== null ? ` (warning at ${a.threshold})` : ""}`;
  return String(a.value);
}

// What the alert is about, in words, for every kind (older alerts may carry no detail).
export function alertDetail(a) {
  if (a.detail) return a.detail;
  return {
    cpu: "CPU above the threshold", memory: "memory above the threshold", disk: "the controller's disk above the threshold",
    status_check: "an EC2 status check is impaired", unexpected_stop: "the instance stopped without anyone asking the monitor",
    unreachable: "no collection succeeded for three poll intervals", cml_unreachable: "the CML controller does not answer",
    cml_unhealthy: "the controller or a compute is not healthy", license: "the licence is not in order",
    scheduled_event: "EC2 scheduled an event", idle: "no lab and no user activity",
  }[a.kind] || "";
}

export function acknowledgement(a) {
  if (!a.acknowledged_at) return null;
  const who = a.acknowledged_by ? ` by ${a.acknowledged_by}` : "";
  const comment = a.acknowledged_comment ? `: ${a.acknowledged_comment}` : "";
  return el("div", { class: "ack-line muted", text: `acknowledged${who} ${ago(a.acknowledged_at)}${comment}` });
}

// The latest end of the silences in force that cover this alert, or null.
export function silencedUntil(a, silences) {
  let until = null;
  for (const s of silences) {
    if (!s.active) continue;
    if (s.worker_id && s.worker_id !== a.worker_id) continue;
    if (s.kind && s.kind !== a.kind) continue;
    if (!until || s.ends_at > until) until = s.ends_at;
  }
  return until;
}

export function silenceMarker(until) {
  return until ? el("span", { class: "badge silenced", text: `silenced until ${new Date(until).toLocaleString([], { dateStyle: "short", timeStyle: "short" })}` }) : null;
}

// The dialog: `alert` given → acknowledge or silence it; else (worker page) silence `worker`.
// `done(message)` runs after the API said yes.
export function openAlertDialog({ alert, worker, done }) {
  const workerId = alert ? alert.worker_id : worker.id;
  const name = alert ? alertSubject(alert) : workerName(workerId);
  const kindName = alert ? KIND_NAMES[alert.kind] || alert.kind : null;
  const error = el("p", { class: "error", role: "alert", id: "work-error" });
  const radio = (group, value, label, checked) => el("label", { class: "choice" },
    el("input", { type: "radio", name: group, value, checked }), ` ${label}`);
  const canAck = alert && alert.state !== "resolved" && !alert.acknowledged_at;
  const what = alert ? el("fieldset", { id: "work-what" }, el("legend", { text: "What to do" }),
    canAck ? radio("work-what", "ack", "Acknowledge: keep it firing, stop reminders", true) : null,
    radio("work-what", "silence", "Silence: send no notification while it lasts", !canAck)) : null;
  const scopes = alert && !workerId  // a fleet-level alert: no worker to silence
    ? [["kind", `${kindName} everywhere`, true]]
    : alert
    ? [["worker-kind", `${kindName} on ${name}`, true], ["worker", `every alert on ${name}`, false], ["kind", `${kindName} on every worker`, false]]
    : [["worker", `every alert on ${name}`, true]];
  const scope = el("fieldset", { id: "work-scope" }, el("legend", { text: "Silence" }), scopes.map(([v, l, c]) => radio("work-scope", v, l, c)));
  const duration = el("select", { id: "work-duration" }, SILENCE_DURATIONS.map(([h, l]) => el("option", { value: h, text: l, selected: h === 4 })));
  const starts = el("input", { id: "work-starts", type: "datetime-local" });
  const comment = el("textarea", { id: "work-comment", rows: 2, maxlength: 1024, placeholder: alert ? "What you found or are doing" : "Why (e.g. maintenance window)" });
  const silenceOnly = el("div", { id: "work-silence" },
    scope,
    el("label", { for: "work-duration", text: "For" }), duration,
    alert ? null : [el("label", { for: "work-starts", text: "Starting (empty: now)" }), starts],
  );
  const dialog = el("dialog", { id: "work-dialog", class: "work", "aria-labelledby": "work-title" },
    el("form", { method: "dialog", novalidate: true },
      el("h2", { id: "work-title", text: alert ? `${kindName} on ${name}` : `Silence ${name}` }),
      what, silenceOnly,
      el("label", { for: "work-comment", text: "Comment" }), comment,
      error,
      el("p", { class: "buttons" },
        el("button", { type: "submit", id: "work-submit", text: "Confirm" }), " ",
        el("button", { type: "button", class: "plain", id: "work-cancel", text: "Cancel", onclick: () => dialog.close() })),
    ),
  );
  const choice = () => (alert ? (dialog.querySelector("input[name=work-what]:checked") || {}).value : "silence");
  const sync = () => { silenceOnly.hidden = choice() !== "silence"; };
  dialog.addEventListener("change", sync);
  dialog.addEventListener("close", () => dialog.remove());
  dialog.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      let message;
      if (choice() === "ack") {
        await send(`/api/alerts/${alert.id}/ack`, "POST", { comment: comment.value.trim() || null });
        message = `acknowledged ${kindName} on ${name}`;
      } else {
        const picked = dialog.querySelector("input[name=work-scope]:checked").value;
        const start = starts.value ? new Date(starts.value) : new Date();
        const body = {
          worker_id: picked === "kind" ? null : workerId,
          kind: picked === "worker" || !alert ? null : alert.kind,
          ends_at: new Date(start.getTime() + Number(duration.value) * 3600e3).toISOString(),
          comment: comment.value.trim() || "silenced from the dashboard",
        };
        if (starts.value) body.starts_at = start.toISOString();
        await send("/api/silences", "POST", body);
        const label = scopes.find(([v]) => v === picked)[1];
        message = `silenced ${label} until ${new Date(body.ends_at).toLocaleString([], { dateStyle: "short", timeStyle: "short" })}`;
      }
      dialog.close();
      done(message);
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  document.body.append(dialog);
  sync();
  dialog.showModal();
  return dialog;
}
