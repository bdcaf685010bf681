// The memories panel: list, search, delete one or all.
import { api } from "/static/api.js";
import { $, el, notify, timeElement } from "/static/dom.js";
import { state } from "/static/state.js";

const SEARCH_LIMIT = 20;

function renderMemories(items, query) {
  const list = $("memory-list");
  list.replaceChildren(
    ...items.map((item) => {
      const li = el("li");
      li.dataset.id = String(item.id);
      li.dataset.testid = "memory-item";
      const body = el("div", "mem-body");
      body.append(el("span", "mem-text", item.text));
      const meta = el("span", "mem-meta");
      meta.append(timeElement(item.created_at));
      if (typeof item.score === "number") meta.append(` · score ${item.score.toFixed(2)}`);
      if (item.expires_at) meta.append(" · ", timeElement(item.expires_at, "expires "));
      body.append(meta);
      const remove = el("button", "btn btn-danger btn-icon", "Delete");
      remove.type = "button";
      remove.dataset.action = "delete-memory";
      remove.dataset.id = String(item.id);
      remove.setAttribute("aria-label", `Delete memory: ${item.text.slice(0, 80)}`);
      li.append(body, remove);
      return li;
    }),
  );
  const count = items.length;
  $("memory-caption").textContent = query
    ? `${count} match${count === 1 ? "" : "es"} for “${query}”.`
    : count
      ? `${count} memor${count === 1 ? "y" : "ies"}.`
      : "No memories yet.";
  $("memory-delete-all").disabled = !query && count === 0;
}

export async function refreshMemories() {
  if (!state.user) return;
  const query = state.memoryQuery;
  try {
    if (query) {
      const params = new URLSearchParams({ q: query, limit: String(SEARCH_LIMIT) });
      renderMemories((await api(`/memories/search?${params}`)).items || [], query);
    } else {
      renderMemories((await api("/memories")).items || [], "");
    }
  } catch (error) {
    if (error.status !== 401) notify(`Memories: ${error.message}`, "error");
  }
}

export async function deleteMemory(button) {
  const li = button.closest("li");
  button.disabled = true;
  try {
    await api(`/memories/${encodeURIComponent(button.dataset.id)}`, { method: "DELETE" });
    const next = li.nextElementSibling || li.previousElementSibling;
    li.remove();
    notify("Memory deleted.");
    (next ? next.querySelector("button") : $("memory-search-input")).focus();
    await refreshMemories();
  } catch (error) {
    button.disabled = false;
    if (error.status !== 401) notify(`Could not delete the memory: ${error.message}`, "error");
  }
}

export async function deleteAllMemories() {
  try {
    const result = await api("/memories", { method: "DELETE" });
    const n = result && typeof result.deleted === "number" ? result.deleted : 0;
    notify(`Deleted ${n} memor${n === 1 ? "y" : "ies"}.`);
    state.memoryQuery = "";
    $("memory-search-input").value = "";
    await refreshMemories();
  } catch (error) {
    if (error.status !== 401) notify(`Could not delete the memories: ${error.message}`, "error");
  }
}
