// The documents panel: upload text, Markdown, HTML and PDF files (administrators may
// publish them to everyone), list your documents and the shared ones, delete yours.
//
// An upload goes through XMLHttpRequest so its progress shows twice: the bytes sent
// (the request's upload events), then the indexing, from the NDJSON lines that
// POST /api/v1/documents?progress=1 streams ({"stage": "embed", "done": 64, "total":
// 300}...), whose last line is the document or the error. Loaded as its own module by
// index.html: it wires its controls itself, loads when the panel opens (a server
// without the knowledge plugin answers 404: the panel says so), and empties itself
// when the session ends (the #app section is hidden).
import { ApiError, api } from "/static/api.js";
import { $, clearError, confirmAction, el, notify, showError, timeElement } from "/static/dom.js";
import { state } from "/static/state.js";

const STAGES = { parse: "Reading", embed: "Indexing" };

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function documentItem(doc) {
  const li = el("li");
  li.dataset.testid = "document-item";
  li.dataset.id = String(doc.id);
  const body = el("div", "doc-body");
  body.append(el("span", "doc-title", doc.title));
  const meta = el("span", "doc-meta");
  const where = doc.shared ? `${doc.collection} (shared)` : doc.collection;
  const chunks = `${doc.chunks} chunk${doc.chunks === 1 ? "" : "s"}`;
  meta.append(`${where} · ${doc.filename} · ${size(doc.size)} · ${chunks} · `);
  meta.append(timeElement(doc.updated_at));
  if (doc.expires_at) meta.append(" · ", timeElement(doc.expires_at, "expires "));
  body.append(meta);
  li.append(body);
  if (!doc.shared || (state.user && state.user.is_admin)) {
    const remove = el("button", "btn btn-danger btn-icon", "Delete");
    remove.type = "button";
    remove.dataset.action = "delete-document";
    remove.setAttribute("aria-label", `Delete document: ${doc.title.slice(0, 80)}`);
    li.append(remove);
  }
  return li;
}

function showProgress(text, done, total) {
  $("documents-progress-box").hidden = false;
  const bar = $("documents-progress");
  if (typeof total === "number" && total > 0) {
    bar.max = total;
    bar.value = Math.min(done, total);
  } else {
    bar.removeAttribute("value"); // indeterminate
  }
  $("documents-progress-text").textContent = text;
}

export async function refreshDocuments() {
  if (!state.user) return;
  try {
    const { documents } = await api("/documents");
    $("documents-unavailable").hidden = true;
    $("documents-body").hidden = false;
    $("document-list").replaceChildren(...documents.map(documentItem));
    $("documents-empty").hidden = documents.length > 0;
    $("documents-shared-box").hidden = !state.user.is_admin;
  } catch (error) {
    if (error.status === 404) {
      $("documents-unavailable").hidden = false;
      $("documents-body").hidden = true;
    } else if (error.status !== 401) {
      notify(`Documents: ${error.message}`, "error");
    }
  }
}

// Send one file; resolves with the stored document, rejects with an ApiError.
function send(file, collection, shared) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/documents?progress=1");
    xhr.setRequestHeader("Accept", "application/x-ndjson, application/json");
    if (state.token) xhr.setRequestHeader("Authorization", `Bearer ${state.token}`);
    let read = 0;
    let outcome = null;
    const consume = () => {
      const text = xhr.responseText;
      let end;
      while ((end = text.indexOf("\n", read)) !== -1) {
        const line = text.slice(read, end);
        read = end + 1;
        if (!line.trim()) continue;
        let message;
        try {
          message = JSON.parse(line);
        } catch {
          continue;
        }
        if (message.stage) {
          const label = STAGES[message.stage] || message.stage;
          const total = message.total;
          const count = typeof total === "number" && total > 1 ? ` ${message.done}/${total}` : "";
          showProgress(`${label} ${file.name}…${count}`, message.done, total);
        } else {
          outcome = message;
        }
      }
    };
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.round((100 * event.loaded) / event.total);
      showProgress(`Uploading ${file.name}: ${percent}%`, event.loaded, event.total);
    });
    xhr.addEventListener("progress", consume);
    xhr.addEventListener("load", () => {
      if (xhr.status !== 200) {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        const detail = body && typeof body.detail === "string" ? body.detail : `Upload failed (${xhr.status}).`;
        reject(new ApiError(xhr.status, detail, body && body.code));
        return;
      }
      consume();
      if (outcome && outcome.document) resolve(outcome.document);
      else if (outcome && outcome.error) {
        reject(new ApiError(outcome.error.status, outcome.error.detail, outcome.error.code));
      } else reject(new ApiError(0, "The upload ended without an answer."));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "Cannot reach the server. Check your connection and try again.", "network")),
    );
    const form = new FormData();
    form.append("file", file, file.name);
    if (collection) form.append("collection", collection);
    if (shared) form.append("shared", "true");
    xhr.send(form);
  });
}

async function onUpload(event) {
  event.preventDefault();
  const input = $("documents-file");
  const files = Array.from(input.files || []);
  if (!files.length) return;
  const collection = $("documents-collection").value.trim();
  const shared = !$("documents-shared-box").hidden && $("documents-shared").checked;
  const button = $("documents-upload");
  button.disabled = true;
  clearError($("documents-error"));
  const failed = [];
  let added = 0;
  for (const file of files) {
    showProgress(`Uploading ${file.name}: 0%`, 0, file.size);
    try {
      await send(file, collection, shared);
      added += 1;
    } catch (error) {
      failed.push(`${file.name}: ${error.message}`);
    }
  }
  button.disabled = false;
  $("documents-progress-box").hidden = true;
  input.value = "";
  if (failed.length) {
    const error = new ApiError(422, "Some files were not added:");
    error.items = failed;
    showError($("documents-error"), error);
  }
  if (added) notify(`Added ${added} document${added === 1 ? "" : "s"}.`);
  await refreshDocuments();
}

async function onListClick(event) {
  const button = event.target.closest("button[data-action='delete-document']");
  if (!button) return;
  const li = button.closest("li");
  const title = li.querySelector(".doc-title").textContent;
  const ok = await confirmAction(
    "Delete this document?",
    `“${title}” and its passages will be deleted. This cannot be undone.`,
    "Delete",
  );
  if (!ok) return;
  button.disabled = true;
  try {
    await api(`/documents/${encodeURIComponent(li.dataset.id)}`, { method: "DELETE" });
    notify("Document deleted.");
    await refreshDocuments();
  } catch (error) {
    button.disabled = false;
    if (error.status !== 401) notify(`Could not delete the document: ${error.message}`, "error");
  }
}

function resetDocuments() {
  $("documents-panel").open = false;
  $("document-list").replaceChildren();
  $("documents-empty").hidden = false;
  $("documents-progress-box").hidden = true;
  $("documents-shared-box").hidden = true;
  $("documents-shared").checked = false;
  clearError($("documents-error"));
}

function wire() {
  const panel = $("documents-panel");
  panel.addEventListener("toggle", () => {
    if (panel.open) refreshDocuments();
  });
  $("documents-refresh").addEventListener("click", refreshDocuments);
  $("documents-upload-form").addEventListener("submit", onUpload);
  $("document-list").addEventListener("click", onListClick);
  // The session ended (session.js hides #app): nothing of that user stays on screen.
  new MutationObserver(() => {
    if ($("app").hidden) resetDocuments();
  }).observe($("app"), { attributes: true, attributeFilter: ["hidden"] });
}

wire();
