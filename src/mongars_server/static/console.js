// monGARS web console: log in, keep several conversations, chat over the websocket
// (streamed token by token, stoppable), browse history and memories. Plain JS
// modules, no build step; the page's CSP allows only same-origin scripts, so
// nothing here is inline. Text is set with textContent and replies are rendered
// by markdown.js as DOM nodes (never innerHTML), so replies and memories cannot
// inject markup.
//
// This module wires the page's controls to the other modules and boots:
//   state.js          the shared state        dom.js       DOM helpers, notices, confirm
//   api.js            the HTTP client         socket.js    the chat websocket
//   session.js        log in/out, password    chat.js      sending, websocket events
//   transcript.js     bubbles, reply details  limits.js    the message limit
//   conversations.js  conversations, history  memories.js  the memories panel
//   learning.js       consent, runs and (administrators) the approval queue
//   documents.js      the documents panel (its own module, loaded by index.html)

import { setUnauthorizedHandler } from "/static/api.js";
import { failPending, handleEvent, regenerate, sendMessage, stopReply } from "/static/chat.js";
import {
  deleteConversation,
  hashConversation,
  newConversation,
  onRenameSubmit,
  openConversation,
  refreshHistory,
  renameConversation,
} from "/static/conversations.js";
import { $, confirmAction } from "/static/dom.js";
import { onConsentChange, onQueueClick, refreshLearning } from "/static/learning.js";
import { hideLimit, onPaste, overLimitText, showLimit, updateCount } from "/static/limits.js";
import { deleteAllMemories, deleteMemory, refreshMemories } from "/static/memories.js";
import {
  endSession,
  onAuthSubmit,
  onPasswordSubmit,
  openPasswordDialog,
  resumeSession,
} from "/static/session.js";
import { ChatSocket } from "/static/socket.js";
import { state } from "/static/state.js";
import { copyReply, rateReply } from "/static/transcript.js";

function wire() {
  $("auth-form").addEventListener("submit", onAuthSubmit);
  $("logout-button").addEventListener("click", () => endSession("You have logged out.", "info"));
  $("password-button").addEventListener("click", openPasswordDialog);
  $("password-form").addEventListener("submit", onPasswordSubmit);
  $("password-cancel").addEventListener("click", () => $("password-dialog").close());

  const input = $("chat-input");
  input.addEventListener("input", updateCount);
  input.addEventListener("paste", onPaste);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const message = input.value.trim();
    if (!message || state.busy) return;
    if (message.length > state.limit) {
      showLimit(overLimitText(message.length));
      return;
    }
    input.value = "";
    updateCount();
    hideLimit();
    sendMessage(message);
  });
  $("chat-stop").addEventListener("click", stopReply);
  $("transcript").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    const bubble = button && button.closest(".msg.assistant");
    if (!bubble) return;
    if (button.dataset.action === "copy") copyReply(bubble);
    else if (button.dataset.action === "regenerate") regenerate(bubble);
    else if (button.dataset.action === "rate") rateReply(bubble, button);
  });

  $("conversation-new").addEventListener("click", newConversation);
  $("conversation-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    const item = button && button.closest("li");
    if (!item) return;
    const sessionId = item.dataset.sessionId;
    if (button.dataset.action === "open-conversation") openConversation(sessionId);
    else if (button.dataset.action === "rename-conversation") renameConversation(sessionId);
    else if (button.dataset.action === "delete-conversation") deleteConversation(sessionId);
  });
  $("rename-form").addEventListener("submit", onRenameSubmit);
  $("rename-cancel").addEventListener("click", () => $("rename-dialog").close());
  $("history-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action='open-conversation']");
    if (button && button.dataset.sessionId !== state.sessionId) openConversation(button.dataset.sessionId);
  });
  window.addEventListener("hashchange", () => {
    const wanted = hashConversation();
    if (state.user && wanted && wanted !== state.sessionId) openConversation(wanted);
  });

  $("history-refresh").addEventListener("click", refreshHistory);
  $("memory-refresh").addEventListener("click", refreshMemories);
  $("memory-search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.memoryQuery = $("memory-search-input").value.trim();
    refreshMemories();
  });
  $("memory-search-input").addEventListener("search", () => {
    // Fired by the field's clear button (and Enter): an emptied field lists all memories again.
    if (!$("memory-search-input").value && state.memoryQuery) {
      state.memoryQuery = "";
      refreshMemories();
    }
  });
  $("memory-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action='delete-memory']");
    if (button) deleteMemory(button);
  });
  $("memory-delete-all").addEventListener("click", async () => {
    const ok = await confirmAction(
      "Delete all memories?",
      "monGARS will forget everything it remembers about you. This cannot be undone.",
      "Delete all",
    );
    if (ok) deleteAllMemories();
  });

  $("learning-panel").addEventListener("toggle", () => {
    if ($("learning-panel").open) refreshLearning();
  });
  $("learning-refresh").addEventListener("click", refreshLearning);
  $("learning-consent").addEventListener("change", onConsentChange);
  $("learning-queue").addEventListener("click", onQueueClick);

  window.addEventListener("online", () => state.socket.reconnectNow());
}

function boot() {
  state.socket = new ChatSocket(handleEvent, failPending);
  setUnauthorizedHandler(() => endSession("Your session has ended. Please log in again."));
  wire();
  updateCount();
  resumeSession();
}

boot();
