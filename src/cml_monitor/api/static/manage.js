// CML Worker Monitor dashboard — Managing the fleet (admins): register a worker, import by tag
// with a preview, rename, set or clear the controller URL, remove. Every form sends what was
// typed and shows the API's own refusal, so the dashboard and the API say the same thing.
// The page a form sits on hands it how to draw that page again (and reload the fleet), so
// this module needs no page module and none needs it back.
import { $, el, say, send, state, statusLine } from "./core.js";

const manageState = { open: false, preview: null };

// A labelled input; the API, not the browser, judges it (forms are `novalidate`).
function labelled(id, label, attrs = {}) {
  return el("label", { class: "stacked", for: id }, label, el("input", { id, type: "text", ...attrs }));
}

function parseTags(text) {
  const tags = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const cut = part.indexOf("=");
    if (cut <= 0) throw new Error(`tags: "${part}" is not Key=Value`);
    tags[part.slice(0, cut).trim()] = part.slice(cut + 1).trim();
  }
  return tags;
}

// The fleet page's "Add workers" panel (admins only). `redraw()` draws the fleet page again,
// `reload()` reads the fleet again from the API.
export function managePanel(redraw, reload) {
  if (state.role !== "admin") return null;
  // Live updates redraw the fleet: keep the panel (and what is typed in it) unless it changed.
  const existing = document.getElementById("manage");
  if (existing && !manageState.rebuild) return existing;
  manageState.rebuild = false;
  const status = statusLine("fleet", "manage-status");
  const tell = (text) => say("fleet", "manage-status", text);
  const register = async (event) => {
    event.preventDefault();
    const body = {
      name: $("#new-name").value.trim(),
      aws_region: $("#new-region").value.trim(),
      aws_instance_id: $("#new-instance").value.trim(),
    };
    const url = $("#new-url").value.trim();
    if (url) body.cml_url = url;
    try {
      const worker = await send("/api/workers", "POST", body);
      state.workers.set(worker.id, worker);
      for (const id of ["new-name", "new-instance", "new-url"]) $(`#${id}`).value = "";
      tell(`registered ${worker.name} (${worker.aws_instance_id}); its monitoring has started`);
      manageState.rebuild = true;
      redraw();
    } catch (error) {
      tell(`not registered: ${error.message}`);
    }
  };
  const importBody = () => ({ aws_region: $("#import-region").value.trim(), tags: parseTags($("#import-tags").value) });
  const preview = async (event) => {
    event.preventDefault();
    try {
      const answer = await send("/api/workers/import", "POST", { ...importBody(), preview: true });
      manageState.preview = { ...answer, request: importBody() };
      tell(answer.would_import.length
        ? `${answer.would_import.length} instance(s) would be added, ${answer.skipped.length} already registered`
        : `nothing to add (${answer.skipped.length} already registered)`);
    } catch (error) {
      manageState.preview = null;
      tell(`no preview: ${error.message}`);
    }
    manageState.rebuild = true;
    redraw();
  };
  const runImport = async () => {
    try {
      const answer = await send("/api/workers/import", "POST", manageState.preview.request);
      manageState.preview = null;
      await reload();
      tell(`imported ${answer.imported.length} worker(s): ${answer.imported.map((w) => w.name).join(", ") || "none"}`);
    } catch (error) {
      tell(`not imported: ${error.message}`);
    }
    manageState.rebuild = true;
    redraw();
  };
  const shown = manageState.preview;
  return el(
    "details",
    { id: "manage", open: manageState.open, ontoggle: (e) => { manageState.open = e.target.open; } },
    el("summary", { text: "Add workers" }),
    el("form", { id: "register-form", class: "manage-form", novalidate: true, onsubmit: register, "aria-label": "Register a worker" },
      el("h3", { text: "Register one worker" }),
      labelled("new-name", "Name", { maxlength: 200 }),
      labelled("new-region", "AWS region", { value: (state.summary && state.summary.default_region) || "us-east-1" }),
      labelled("new-instance", "EC2 instance id", { placeholder: "i-0123456789abcdef0" }),
      labelled("new-url", "CML controller URL (optional)", { type: "url", placeholder: "https://10.0.0.5" }),
      el("button", { type: "submit", class: "plain", id: "register", text: "Register" })),
    el("form", { id: "import-form", class: "manage-form", novalidate: true, onsubmit: preview, "aria-label": "Import by tag" },
      el("h3", { text: "Import the instances carrying tags" }),
      labelled("import-region", "AWS region", { value: (shown && shown.request.aws_region) || "us-east-1" }),
      labelled("import-tags", "Tags (Key=Value, comma separated; all must match)", { placeholder: "Role=cml", value: shown ? Object.entries(shown.request.tags).map(([k, v]) => `${k}=${v}`).join(", ") : "" }),
      el("button", { type: "submit", class: "plain", id: "import-preview", text: "Preview" }),
      shown ? el("div", { id: "import-result" },
        shown.would_import.length
          ? el("ul", { id: "would-import" }, shown.would_import.map((i) => el("li", { text: `${i.name} — ${i.aws_instance_id} (${i.state || "?"})` })))
          : el("p", { class: "muted", text: "Nothing new carries these tags." }),
        shown.skipped.length ? el("p", { class: "muted", text: `Already registered: ${shown.skipped.map((s) => s.aws_instance_id).join(", ")}` }) : null,
        shown.would_import.length ? el("button", { type: "button", class: "plain", id: "import-run", text: `Import ${shown.would_import.length} worker(s)`, onclick: runImport }) : null,
      ) : null),
    status,
  );
}

// The worker page's "Manage" section (admins only): rename, controller URL, remove.
// `redraw()` draws the worker's page again.
export function manageWorkerSection(worker, redraw) {
  if (state.role !== "admin") return null;
  const status = statusLine(worker.id, "edit-status");
  const tell = (text) => say(worker.id, "edit-status", text);
  const patch = async (body, what) => {
    try {
      const saved = await send(`/api/workers/${worker.id}`, "PATCH", body);
      state.workers.set(saved.id, saved);
      tell(`${what}: saved`);
      redraw();
    } catch (error) {
      tell(`${what} not saved: ${error.message}`);
    }
  };
  const remove = () => {
    const dialog = el("dialog", { id: "remove-dialog", "aria-labelledby": "remove-title" },
      el("form", { method: "dialog" },
        el("h2", { id: "remove-title", text: `Remove ${worker.name}?` }),
        el("p", { text: `${worker.name} (${worker.aws_instance_id}) stops being monitored and its history goes too: metrics, alerts and actions recorded for it are deleted. The EC2 instance itself is not touched.` }),
        el("p", { class: "error", role: "alert", id: "remove-error" }),
        el("p", { class: "buttons" },
          el("button", { type: "submit", id: "remove-confirm", class: "danger", text: `Remove ${worker.name}` }), " ",
          el("button", { type: "button", class: "plain", id: "remove-cancel", text: "Keep it", onclick: () => dialog.close() }))));
    dialog.addEventListener("close", () => dialog.remove());
    dialog.querySelector("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await send(`/api/workers/${worker.id}`, "DELETE");
        state.workers.delete(worker.id);
        dialog.close();
        say("fleet", "manage-status", `removed ${worker.name} and its history`);
        location.hash = "#/";
      } catch (error) {
        $("#remove-error").textContent = error.message;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
  };
  return el(
    "section",
    { "aria-label": "Manage this worker", id: "manage-worker" },
    el("h2", { text: "Manage" }),
    el("form", { class: "tools", novalidate: true, id: "rename-form", onsubmit: (e) => { e.preventDefault(); patch({ name: $("#edit-name").value.trim() }, "name"); } },
      el("label", { class: "field", for: "edit-name" }, "Name ", el("input", { id: "edit-name", type: "text", value: worker.name })),
      el("button", { type: "submit", class: "plain", id: "save-name", text: "Rename" })),
    el("form", { class: "tools", novalidate: true, id: "url-form", onsubmit: (e) => { e.preventDefault(); patch({ cml_url: $("#edit-url").value.trim() || null }, "controller URL"); } },
      el("label", { class: "field", for: "edit-url" }, "CML controller URL ", el("input", { id: "edit-url", type: "url", value: worker.cml_url || "", placeholder: "none" })),
      el("button", { type: "submit", class: "plain", id: "save-url", text: "Save URL" }),
      worker.cml_url ? el("button", { type: "button", class: "plain", id: "clear-url", text: "Clear URL", onclick: () => patch({ cml_url: null }, "controller URL cleared") }) : null),
    el("p", {}, el("button", { type: "button", class: "plain danger-outline", id: "remove-worker", text: "Remove this worker…", onclick: remove })),
    status,
  );
}
