// The conversations list (open, new, rename, delete; the open one is kept in the
// address and in localStorage) and the history of turns, labelled by conversation.
import { api, ApiError, newId } from "/static/api.js";
import { $, clearError, confirmAction, el, notify, showError, timeElement } from "/static/dom.js";
import { state } from "/static/state.js";
import { assistantBubble, clearTranscript, finishBubble, userBubble } from "/static/transcript.js";

const CONVERSATION_KEY = "mongars.conversation";
const HISTORY_LIMIT = 50;

function conversationTitle(conversation) {
  return (conversation && conversation.title) || "New conversation";
}

function rememberConversation(sessionId) {
  localStorage.setItem(CONVERSATION_KEY, sessionId);
  const hash = `#c=${encodeURIComponent(sessionId)}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

export function hashConversation() {
  const match = /^#c=([A-Za-z0-9_.@-]{1,150})$/.exec(location.hash);
  return match ? match[1] : null;
}

function renderConversations() {
  const list = $("conversation-list");
  list.replaceChildren(
    ...state.conversations.map((conversation) => {
      const li = el("li");
      li.dataset.testid = "conversation-item";
      li.dataset.sessionId = conversation.session_id;
      const open = el("button", "conv-open");
      open.type = "button";
      open.dataset.action = "open-conversation";
      open.append(el("span", "conv-title", conversationTitle(conversation)));
      const meta = el("span", "conv-meta");
      const n = conversation.turns;
      meta.append(`${n} turn${n === 1 ? "" : "s"} · `, timeElement(conversation.updated_at));
      open.append(meta);
      if (conversation.session_id === state.sessionId) open.setAttribute("aria-current", "true");
      const rename = el("button", "btn btn-small btn-quiet", "Rename");
      rename.type = "button";
      rename.dataset.action = "rename-conversation";
      rename.setAttribute("aria-label", `Rename: ${conversationTitle(conversation)}`);
      const remove = el("button", "btn btn-small btn-danger", "Delete");
      remove.type = "button";
      remove.dataset.action = "delete-conversation";
      remove.setAttribute("aria-label", `Delete: ${conversationTitle(conversation)}`);
      li.append(open, rename, remove);
      return li;
    }),
  );
  $("conversations-empty").hidden = state.conversations.length > 0;
  const current = state.conversations.find((c) => c.session_id === state.sessionId);
  $("chat-title").textContent = conversationTitle(current);
}

let conversationsAsked = 0;
export async function refreshConversations() {
  if (!state.user) return;
  // Answers can come back out of order: only the newest request's counts.
  const asked = ++conversationsAsked;
  let items;
  try {
    items = (await api("/conversations")).items || [];
  } catch (error) {
    if (error.status !== 401) notify(`Conversations: ${error.message}`, "error");
    return;
  }
  if (asked !== conversationsAsked) return;
  state.conversations = items;
  renderConversations();
  renderHistory(state.historyItems);
}

// Show ``sessionId``'s turns; one that does not exist yet is a new, empty conversation.
export async function openConversation(sessionId) {
  if (state.busy) {
    notify("Wait for the reply (or stop it) before switching conversations.", "error");
    return;
  }
  state.sessionId = sessionId;
  rememberConversation(sessionId);
  clearTranscript();
  clearError($("chat-error"));
  renderConversations();
  if (!state.conversations.some((c) => c.session_id === sessionId)) return;
  let turns;
  try {
    turns = (await api(`/conversations/${encodeURIComponent(sessionId)}/turns`)).items || [];
  } catch (error) {
    if (error.status !== 401 && error.status !== 404) notify(`Conversation: ${error.message}`, "error");
    return;
  }
  if (state.sessionId !== sessionId) return; // another one was opened meanwhile
  for (const turn of turns) {
    userBubble(turn.query);
    finishBubble(assistantBubble("here", turn.query), {
      response: turn.response,
      turn_id: turn.turn_id,
      rating: turn.rating,
      adapter: turn.adapter,
    });
  }
  const box = $("transcript");
  box.scrollTop = box.scrollHeight;
}

// The new conversation opens at once (what is typed next goes to it); the server
// learns of it meanwhile. Its first turn would create it too, so a 409 is fine.
export async function newConversation() {
  if (state.busy) {
    notify("Wait for the reply (or stop it) before starting a conversation.", "error");
    return;
  }
  const sessionId = newId();
  openConversation(sessionId);
  $("chat-input").focus();
  try {
    await api("/conversations", { method: "POST", body: { session_id: sessionId } });
  } catch (error) {
    if (error.status !== 401 && error.status !== 409) {
      notify(`Could not start a conversation: ${error.message}`, "error");
    }
  }
  await refreshConversations();
}

export function renameConversation(sessionId) {
  const conversation = state.conversations.find((c) => c.session_id === sessionId);
  const dialog = $("rename-dialog");
  $("rename-input").value = conversation ? conversation.title : "";
  dialog.dataset.sessionId = sessionId;
  clearError($("rename-error"));
  dialog.showModal();
  $("rename-input").select();
}

export async function onRenameSubmit(event) {
  event.preventDefault();
  const dialog = $("rename-dialog");
  const title = $("rename-input").value.trim();
  if (!title) {
    showError($("rename-error"), new ApiError(0, "Enter a title."));
    return;
  }
  try {
    await api(`/conversations/${encodeURIComponent(dialog.dataset.sessionId)}`, {
      method: "PATCH",
      body: { title },
    });
    dialog.close();
    await refreshConversations();
  } catch (error) {
    showError($("rename-error"), error);
  }
}

export async function deleteConversation(sessionId) {
  const conversation = state.conversations.find((c) => c.session_id === sessionId);
  const ok = await confirmAction(
    `Delete “${conversationTitle(conversation)}”?`,
    "Its messages and replies are deleted. What monGARS learnt in it stays under Memories, where you can delete it.",
    "Delete",
  );
  if (!ok) return;
  try {
    await api(`/conversations/${encodeURIComponent(sessionId)}`, { method: "DELETE" });
    notify("Conversation deleted.");
  } catch (error) {
    if (error.status !== 401) notify(`Could not delete the conversation: ${error.message}`, "error");
    return;
  }
  state.conversations = state.conversations.filter((c) => c.session_id !== sessionId);
  if (sessionId === state.sessionId) await openConversation(pickConversation());
  await refreshConversations();
  refreshHistory();
}

export function pickConversation() {
  const wanted = [hashConversation(), localStorage.getItem(CONVERSATION_KEY)];
  for (const id of wanted) {
    if (id && state.conversations.some((c) => c.session_id === id)) return id;
  }
  return state.conversations.length ? state.conversations[0].session_id : newId();
}

export async function conversationChanged(data) {
  await refreshConversations();
  if (data.change === "deleted" && data.session_id === state.sessionId && !state.busy) {
    await openConversation(pickConversation());
  }
}

export function renderHistory(items) {
  // A list fetched before a rating was stored must not undo the rating heard since.
  for (const item of items) {
    if (state.ratingsHeard.has(item.turn_id)) item.rating = state.ratingsHeard.get(item.turn_id);
  }
  state.historyItems = items;
  const titles = new Map(state.conversations.map((c) => [c.session_id, conversationTitle(c)]));
  const list = $("history-list");
  list.replaceChildren(
    ...items.map((item) => {
      const li = el("li");
      li.dataset.id = String(item.id);
      li.dataset.testid = "history-item";
      const label = el("button", "h-conv", titles.get(item.session_id) || item.session_id);
      label.type = "button";
      label.dataset.action = "open-conversation";
      label.dataset.sessionId = item.session_id;
      label.dataset.testid = "history-conversation";
      li.append(label, el("div", "q", item.query), el("div", "r", item.response), timeElement(item.timestamp));
      const notes = [];
      if (item.rating) notes.push(item.rating === "up" ? "rated good" : "rated bad");
      if (item.adapter) notes.push(`adapter ${item.adapter}`);
      if (notes.length) {
        const meta = el("small", "h-meta", ` · ${notes.join(" · ")}`);
        meta.dataset.testid = "history-meta";
        li.append(meta);
      }
      return li;
    }),
  );
  $("history-empty").hidden = items.length > 0;
}

// A reply was rated (turn.rated): its history item shows the new rating.
export function historyRated(turnId, rating) {
  state.ratingsHeard.set(turnId, rating);
  const item = state.historyItems.find((candidate) => candidate.turn_id === turnId);
  if (!item) return;
  item.rating = rating;
  renderHistory(state.historyItems);
}

export async function refreshHistory() {
  if (!state.user) return;
  const query = new URLSearchParams({ limit: String(HISTORY_LIMIT) });
  try {
    renderHistory(await api(`/conversation/history?${query}`));
  } catch (error) {
    if (error.status !== 401) notify(`History: ${error.message}`, "error");
  }
}
