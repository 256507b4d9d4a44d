// CML Worker Monitor dashboard — The confirmation a person gives before stopping, starting or rebooting a worker.
import { api, el } from "./core.js";

// Ask, in a modal dialog naming the worker, whether to `kind` it: its started labs (read from
// its controller now) are listed, a reason is asked for, and when labs run the person must
// tick "anyway" (the API refuses a stop or reboot over started labs without `force`).
// Resolves to the request body ({reason, force}) or null when the person cancels.
export function confirmAction(worker, kind) {
  const verb = kind[0].toUpperCase() + kind.slice(1);
  const interrupts = kind !== "start";
  const labs = el("div", { id: "confirm-labs", class: "muted", text: interrupts ? "Reading its labs from the controller…" : "" });
  const reason = el("textarea", { id: "confirm-reason", name: "reason", maxlength: "300", rows: "2", placeholder: "e.g. kernel patch window" });
  const force = el("input", { type: "checkbox", id: "confirm-force", name: "force" });
  const forceRow = el("label", { id: "confirm-force-row", hidden: true }, force, ` ${verb} anyway: I have told these users`);
  const go = el("button", { type: "submit", id: "confirm-go", value: "go", text: verb });
  const dialog = el(
    "dialog",
    { id: "confirm-action", class: "confirm", "aria-labelledby": "confirm-title" },
    el(
      "form",
      { method: "dialog" },
      el("h2", { id: "confirm-title", text: `${verb} ${worker.name}?` }),
      el("p", { text: `Instance ${worker.aws_instance_id} in ${worker.aws_region}.` }),
      labs,
      el("label", { for: "confirm-reason", text: "Reason (kept in the audit trail)" }),
      reason,
      forceRow,
      el("p", { class: "buttons" }, el("button", { type: "submit", value: "cancel", class: "plain", id: "confirm-cancel", text: "Cancel" }), " ", go),
    ),
  );
  document.body.append(dialog);
  if (interrupts) {
    api(`/api/workers/${worker.id}/labs`).then((found) => {
      if (found.error) {
        labs.textContent = `Its labs could not be read now (${found.error}); the last collection counted ${worker.active_labs_count}.`;
        forceRow.hidden = !worker.active_labs_count;
      } else if (!found.items.length) {
        labs.textContent = "No lab is started on it.";
      } else {
        labs.replaceChildren(
          el("strong", { class: "error", text: `${found.items.length} started lab(s) would be interrupted:` }),
          el("ul", {}, found.items.map((lab) => el("li", { text: `${lab.title || lab.id} — ${lab.owner || "unknown user"}` }))),
        );
        forceRow.hidden = false;
      }
    }).catch((error) => { labs.textContent = `Its labs could not be read: ${error.message}`; });
  }
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const confirmed = dialog.returnValue === "go";
      dialog.remove();
      resolve(confirmed ? { reason: reason.value.trim() || null, force: !forceRow.hidden && force.checked } : null);
    });
    dialog.showModal();
    reason.focus();
  });
}
