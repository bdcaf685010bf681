// Sending a message (over the websocket, streamed and stoppable, or over HTTP
// when the socket is down), Stop and Regenerate, and the websocket events.
import { api, ApiError, newId } from "/static/api.js";
import {
  conversationChanged,
  historyRated,
  refreshConversations,
  refreshHistory,
  renderHistory,
} from "/static/conversations.js";
import { $, clearError, showError } from "/static/dom.js";
import { refreshMemories } from "/static/memories.js";
import { state } from "/static/state.js";
import {
  appendDelta,
  assistantBubble,
  failBubble,
  finishBubble,
  markLastReply,
  renderDetails,
  showRating,
  stopBubble,
  userBubble,
} from "/static/transcript.js";

export function setBusy(busy) {
  state.busy = busy;
  $("chat-send").disabled = busy;
  $("chat-send").textContent = busy ? "Sending…" : "Send";
  if (!busy) {
    state.running = null;
    $("chat-stop").hidden = true;
  }
}

export async function sendMessage(message) {
  clearError($("chat-error"));
  const sessionId = state.sessionId;
  userBubble(message);
  const bubble = assistantBubble("here", message);
  setBusy(true);
  if (state.socket.open) {
    const id = newId();
    state.pending.set(id, bubble);
    if (state.socket.send({ id, type: "chat.send", data: { message, session_id: sessionId } })) {
      state.running = id;
      $("chat-stop").hidden = false;
      return;
    }
    state.pending.delete(id);
  }
  // The socket is down: ask over HTTP instead (no streaming, no stop).
  try {
    const reply = await api("/conversation/chat", {
      method: "POST",
      body: { message, session_id: sessionId },
    });
    const shown = state.turns.get(reply.turn_id);
    if (shown) {
      // The websocket came back and already delivered this reply as "from elsewhere".
      bubble.remove();
      shown.dataset.origin = "here";
      shown.querySelector(".msg-meta")?.remove();
      state.asked.set(shown, message);
      markLastReply();
    } else {
      finishBubble(bubble, reply);
    }
    replyArrived(reply);
  } catch (error) {
    failBubble(bubble, "Not sent.");
    showError($("chat-error"), error);
  } finally {
    setBusy(false);
  }
}

export function stopReply() {
  const ref = state.running;
  if (ref === null) return;
  state.socket.send({ id: newId(), type: "chat.stop", data: { ref } });
}


// Regenerate asks the same message again: the new reply is a new turn, and the
// earlier one stays in the conversation (nothing is lost if the new try fails).
export function regenerate(bubble) {
  const message = state.asked.get(bubble);
  if (!message || state.busy) return;
  sendMessage(message);
}

// The socket closed: replies to frames sent over it will never arrive.
export function failPending() {
  for (const bubble of state.pending.values()) {
    failBubble(bubble, "Connection lost before the reply arrived; it may still appear in the history.");
  }
  if (state.pending.size) setBusy(false);
  state.pending.clear();
}

function settle(ref) {
  const bubble = ref === null || ref === undefined ? undefined : state.pending.get(ref);
  if (bubble) {
    state.pending.delete(ref);
    if (state.pending.size === 0) setBusy(false);
  }
  return bubble;
}

export function handleEvent(event) {
  const data = event.data || {};
  switch (event.type) {
    case "history.snapshot":
      renderHistory(data.items || []);
      break;
    case "ack":
      if (!data.ok) {
        const bubble = settle(data.ref);
        const message = (data.error && data.error.message) || "The server refused the message.";
        if (bubble) {
          failBubble(bubble, "Not sent.");
          showError($("chat-error"), new ApiError(0, message, data.error && data.error.code));
        } else {
          console.warn(`monGARS: the server refused frame ${data.ref}: ${message}`);
        }
      }
      break;
    case "chat.delta": {
      const bubble = state.pending.get(data.ref);
      if (bubble && typeof data.delta === "string") appendDelta(bubble, data.delta);
      break;
    }
    case "chat.reply": {
      const bubble = settle(data.ref);
      if (state.turns.has(data.turn_id)) {
        if (bubble) bubble.remove();
        break;
      }
      if (!bubble && data.session_id !== state.sessionId) {
        // A turn of another conversation, sent from elsewhere: list it, don't show it here.
        refreshConversations();
        refreshHistory();
        break;
      }
      finishBubble(bubble || assistantBubble("elsewhere"), data);
      replyArrived(data);
      break;
    }
    case "chat.stopped": {
      const bubble = settle(data.ref);
      if (bubble) stopBubble(bubble);
      break;
    }
    case "chat.error": {
      const bubble = settle(data.ref);
      if (bubble) failBubble(bubble, "No reply.");
      showError($("chat-error"), new ApiError(0, data.message || "The reply failed.", data.code));
      break;
    }
    case "conversation.changed":
      conversationChanged(data);
      break;
    case "turn.rated": // rated here, in another tab or over the API
      showRating(state.turns.get(data.turn_id), data.rating ?? null);
      historyRated(data.turn_id, data.rating ?? null);
      break;
    default:
      break; // events added by newer servers are ignored
  }
}

function replyArrived(reply) {
  renderDetails(reply);
  refreshConversations();
  refreshHistory();
  if (!state.memoryQuery) refreshMemories();
}
