// The message limit: the character counter, the "too long" message, and pastes
// that would go over the limit (refused with the reason rather than cut).
import { api } from "/static/api.js";
import { $ } from "/static/dom.js";
import { state } from "/static/state.js";

const COUNTER_FROM = 0.8; // show the character counter from 80 % of the limit

export function overLimitText(length) {
  const limit = state.limit.toLocaleString("en");
  return `The message has ${length.toLocaleString("en")} characters; the limit is ${limit}. Shorten it to send it.`;
}

export function updateCount() {
  const length = $("chat-input").value.length;
  const count = $("chat-count");
  count.textContent = `${length.toLocaleString("en")} / ${state.limit.toLocaleString("en")}`;
  count.hidden = length < COUNTER_FROM * state.limit;
  count.dataset.over = String(length > state.limit);
  if (length > state.limit) showLimit(overLimitText(length));
  else if ($("chat-limit").dataset.kind === "over") hideLimit();
}

export function showLimit(message, kind = "over") {
  const box = $("chat-limit");
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
}

export function hideLimit() {
  const box = $("chat-limit");
  box.hidden = true;
  box.textContent = "";
  box.dataset.kind = "";
}

// A paste that would take the message over the limit is refused, with the reason,
// rather than cut silently.
export function onPaste(event) {
  const input = $("chat-input");
  const pasted = (event.clipboardData && event.clipboardData.getData("text/plain")) || "";
  const kept = input.value.length - (input.selectionEnd - input.selectionStart);
  if (kept + pasted.length <= state.limit) {
    if ($("chat-limit").dataset.kind === "paste") hideLimit();
    return;
  }
  event.preventDefault();
  const room = Math.max(0, state.limit - kept);
  showLimit(
    `Nothing was pasted: the text has ${pasted.length.toLocaleString("en")} characters and a message ` +
      `can have at most ${state.limit.toLocaleString("en")} (room left: ${room.toLocaleString("en")}).`,
    "paste",
  );
}

export async function loadLimits() {
  try {
    const limits = await api("/limits", { auth: false });
    if (limits && Number.isInteger(limits.max_message_chars)) state.limit = limits.max_message_chars;
  } catch (error) {
    console.warn(`monGARS: using the default message limit: ${error.message}`);
  }
  updateCount();
}
