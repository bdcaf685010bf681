// Forget me: the account bar's button deletes everything stored of the signed-in
// user (DELETE /api/v1/user/me/data: history, conversations, memories, documents,
// style profile, learning records, adapters) after a confirmation; the account
// stays. The panels are then shown empty and a new conversation opens. Loaded as its
// own module by index.html: it wires its button itself.
import { api, newId } from "/static/api.js";
import { openConversation, refreshConversations, refreshHistory } from "/static/conversations.js";
import { refreshDocuments } from "/static/documents.js";
import { $, confirmAction, notify } from "/static/dom.js";
import { refreshLearning } from "/static/learning.js";
import { refreshMemories } from "/static/memories.js";
import { state } from "/static/state.js";

const KINDS = [
  ["turns", "turn", "turns"],
  ["conversations", "conversation", "conversations"],
  ["memories", "memory", "memories"],
  ["documents", "document", "documents"],
  ["adapters", "adapter", "adapters"],
];

function counted(deleted) {
  const parts = [];
  for (const [key, one, many] of KINDS) {
    const n = deleted[key];
    if (typeof n === "number" && n > 0) parts.push(`${n} ${n === 1 ? one : many}`);
  }
  return parts.length ? parts.join(", ") : "nothing was stored";
}

export async function forgetMe() {
  if (!state.user) return;
  if (state.busy) {
    notify("Wait for the reply (or stop it) before deleting your data.", "error");
    return;
  }
  const ok = await confirmAction(
    "Delete all your data?",
    "Your conversations, history, memories, documents, style profile, learning records " +
      "and the adapters learnt from them are deleted for good. Your account stays: you start " +
      "again from zero. This cannot be undone.",
    "Delete my data",
  );
  if (!ok) return;
  const button = $("forget-button");
  button.disabled = true;
  let result;
  try {
    result = await api("/user/me/data", { method: "DELETE" });
  } catch (error) {
    if (error.status !== 401) notify(`Could not delete your data: ${error.message}`, "error");
    return;
  } finally {
    button.disabled = false;
  }
  state.conversations = [];
  state.historyItems = [];
  state.turns.clear();
  state.ratingsHeard.clear();
  state.memoryQuery = "";
  $("memory-search-input").value = "";
  await openConversation(newId());
  await Promise.all([refreshConversations(), refreshHistory(), refreshMemories()]);
  if ($("learning-panel").open) await refreshLearning();
  if ($("documents-panel").open) await refreshDocuments();
  notify(`Your data was deleted: ${counted(result.deleted || {})}.`);
}

$("forget-button").addEventListener("click", forgetMe);
