// The transcript: user and assistant bubbles (a reply streams into its bubble,
// then is rendered as safe Markdown by markdown.js), their Copy / Regenerate
// buttons and thumbs up / down, the sources a reply cites, and the "Last reply" details
// (confidence, speech plan).
import { api } from "/static/api.js";
import { $, el, notify, seconds } from "/static/dom.js";
import { renderMarkdown } from "/static/markdown.js";
import { state } from "/static/state.js";

function transcriptAppend(node) {
  const box = $("transcript");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  $("transcript-empty").hidden = true;
  box.append(node);
  if (nearBottom) box.scrollTop = box.scrollHeight;
}

export function clearTranscript() {
  state.pending.clear();
  state.turns.clear();
  state.running = null;
  $("chat-stop").hidden = true;
  $("transcript").replaceChildren($("transcript-empty"));
  $("transcript-empty").hidden = false;
  $("details-empty").hidden = false;
  $("details-body").hidden = true;
}

export function userBubble(text) {
  const bubble = el("div", "msg user");
  bubble.dataset.testid = "user-message";
  bubble.append(el("span", "visually-hidden", "You: "), el("span", "msg-text", text));
  transcriptAppend(bubble);
  return bubble;
}

// ``message`` is what the user asked, kept for "Regenerate".
export function assistantBubble(origin = "here", message = "") {
  const bubble = el("div", "msg assistant");
  bubble.dataset.testid = "assistant-message";
  bubble.dataset.state = "pending";
  bubble.dataset.origin = origin;
  bubble.setAttribute("aria-busy", "true");
  const text = el("span", "msg-text");
  text.dataset.testid = "reply-text";
  text.append(document.createTextNode(""));
  bubble.append(el("span", "visually-hidden", "monGARS: "), text);
  if (origin === "elsewhere") {
    bubble.append(el("small", "msg-meta", "Reply to a message sent from another client"));
  }
  state.asked.set(bubble, message);
  transcriptAppend(bubble);
  return bubble;
}

function bubbleText(bubble) {
  return bubble.querySelector(".msg-text");
}

export function appendDelta(bubble, delta) {
  bubble.dataset.state = "streaming";
  const text = bubbleText(bubble);
  if (!text.firstChild) text.append(document.createTextNode(""));
  text.firstChild.appendData(delta);
  const box = $("transcript");
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
}

function actionButton(label, action, testid) {
  const button = el("button", "btn btn-small btn-quiet", label);
  button.type = "button";
  button.dataset.action = action;
  button.dataset.testid = testid;
  return button;
}

// A settled reply: its text as safe Markdown, then what the user should know about it.
export function finishBubble(bubble, reply) {
  const raw = typeof reply.response === "string" ? reply.response : "";
  bubbleText(bubble).replaceChildren(renderMarkdown(raw));
  state.raw.set(bubble, raw);
  bubble.dataset.state = "final";
  bubble.dataset.turnId = reply.turn_id || "";
  bubble.setAttribute("aria-busy", "false");
  if (reply.truncated) {
    const cut = el("small", "msg-cut", "This reply was cut at the length limit.");
    cut.dataset.testid = "reply-truncated";
    bubble.append(cut);
  }
  const memories = Array.isArray(reply.memories) ? reply.memories : [];
  if (memories.length) {
    const line = el("small", "msg-memories");
    line.dataset.testid = "reply-memories";
    line.append(el("span", "label", "Remembered: "));
    memories.forEach((memory, index) => {
      if (index) line.append(" · ");
      const text = String(memory.text || "");
      const item = el("span", "mem", text.length > 80 ? `${text.slice(0, 79)}…` : text);
      if (typeof memory.score === "number") item.title = `relevance ${memory.score.toFixed(2)}`;
      line.append(item);
    });
    bubble.append(line);
  }
  const sources = Array.isArray(reply.sources) ? reply.sources : [];
  if (sources.length) bubble.append(sourceList(sources));
  if (typeof reply.confidence === "number") {
    bubble.append(el("small", "msg-meta", `Confidence ${Math.round(reply.confidence * 100)}%`));
  }
  if (reply.adapter) {
    const adapter = el("small", "msg-meta", `Answered by your adapter ${reply.adapter}`);
    adapter.dataset.testid = "reply-adapter";
    bubble.append(adapter);
  }
  const actions = el("div", "msg-actions");
  actions.append(actionButton("Copy", "copy", "copy-reply"));
  if (reply.turn_id) {
    actions.append(ratingButton("up", "Good reply"), ratingButton("down", "Bad reply"));
  }
  bubble.append(actions);
  if (reply.turn_id) state.turns.set(reply.turn_id, bubble);
  showRating(bubble, reply.rating ?? null);
  markLastReply();
}

// The numbered sources the reply was given ([1] in its text): number, title, excerpt.
function sourceList(sources) {
  const box = el("div", "msg-sources");
  box.dataset.testid = "reply-sources";
  box.append(el("span", "label", "Sources"));
  const list = el("ol");
  for (const source of sources) {
    const item = el("li", "source");
    item.dataset.testid = "reply-source";
    if (Number.isInteger(source.number)) item.value = source.number;
    const title = String(source.title || (source.kind === "memory" ? "A conversation" : "A document"));
    const text = String(source.text || "");
    item.append(
      el("span", "source-number", `[${source.number}]`),
      " ",
      el("span", "source-title", title),
      el("span", "source-excerpt", text.length > 160 ? `${text.slice(0, 159)}…` : text),
    );
    item.title = text;
    list.append(item);
  }
  box.append(list);
  return box;
}

// A thumb drawn as SVG (an emoji needs a font the machine may not have).
const THUMB = "M2 10h4v11H2zM8 10l4-7c1-1 3 0 2.5 2l-1 4H20c1.2 0 2 1 1.7 2.2l-1.9 8.1c-.3 1-1.1 1.7-2.1 1.7H8z";

function thumb(rating) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("thumb");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", THUMB);
  if (rating === "down") path.setAttribute("transform", "rotate(180 12 12)");
  svg.append(path);
  return svg;
}

function ratingButton(rating, label) {
  const button = actionButton("", "rate", `rate-${rating}`);
  button.append(thumb(rating));
  button.classList.add("rate");
  button.dataset.rating = rating;
  button.title = label;
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-pressed", "false");
  return button;
}

// Press the thumb of ``rating`` ("up", "down"; null: neither) in a reply's bubble.
export function showRating(bubble, rating) {
  if (!bubble) return;
  bubble.dataset.rating = rating || "";
  for (const button of bubble.querySelectorAll("button[data-action='rate']")) {
    button.setAttribute("aria-pressed", String(button.dataset.rating === rating));
  }
}

// A thumb was clicked: rate the reply, or take the rating back when it was pressed.
export async function rateReply(bubble, button) {
  const turnId = bubble.dataset.turnId;
  if (!turnId) return;
  const rating = button.getAttribute("aria-pressed") === "true" ? null : button.dataset.rating;
  const buttons = bubble.querySelectorAll("button[data-action='rate']");
  for (const other of buttons) other.disabled = true;
  try {
    const rated = await api(`/turns/${encodeURIComponent(turnId)}/rating`, {
      method: "PUT",
      body: { rating },
    });
    showRating(bubble, rated.rating ?? null);
  } catch (error) {
    if (error.status !== 401) notify(`Could not rate the reply: ${error.message}`, "error");
  } finally {
    for (const other of buttons) other.disabled = false;
  }
}

// Only the newest reply can be regenerated.
export function markLastReply() {
  for (const old of $("transcript").querySelectorAll("[data-action='regenerate']")) old.remove();
  const finals = $("transcript").querySelectorAll(".msg.assistant[data-state='final']");
  const last = finals[finals.length - 1];
  if (!last || !state.asked.get(last)) return;
  last.querySelector(".msg-actions").append(actionButton("Regenerate", "regenerate", "regenerate-reply"));
}

export function failBubble(bubble, message) {
  bubbleText(bubble).replaceChildren(document.createTextNode(message));
  bubble.dataset.state = "error";
  bubble.setAttribute("aria-busy", "false");
}

export function stopBubble(bubble) {
  bubble.dataset.state = "stopped";
  bubble.setAttribute("aria-busy", "false");
  const meta = el("small", "msg-meta", "Stopped. Nothing of this turn was saved.");
  meta.dataset.testid = "reply-stopped";
  bubble.append(meta);
}

export async function copyReply(bubble) {
  const text = state.raw.get(bubble) ?? bubbleText(bubble).textContent;
  try {
    await navigator.clipboard.writeText(text);
    notify("Reply copied.");
  } catch {
    notify("Could not copy: the browser refused access to the clipboard.", "error");
  }
}

export function renderDetails(reply) {
  $("details-empty").hidden = true;
  $("details-body").hidden = false;
  const confidence = typeof reply.confidence === "number" ? reply.confidence : null;
  $("reply-confidence").textContent = confidence === null ? "–" : `${Math.round(confidence * 100)}%`;
  $("reply-confidence-meter").value = confidence === null ? 0 : Math.max(0, Math.min(1, confidence));
  $("reply-processing-time").textContent = seconds(reply.processing_time);

  const speech = reply.speech_turn || {};
  const tempo = speech.tempo;
  $("speech-tempo").textContent =
    typeof tempo === "number" ? `${tempo.toFixed(2)}×` : tempo ? String(tempo) : "–";
  const wps = speech.average_words_per_second;
  $("speech-wps").textContent = typeof wps === "number" ? wps.toFixed(2) : "–";

  const segments = Array.isArray(speech.segments) ? speech.segments : [];
  let total = 0;
  const rows = segments.map((segment, index) => {
    total += (segment.estimated_duration || 0) + (segment.pause_after || 0);
    const row = el("tr");
    row.dataset.testid = "speech-segment";
    row.append(
      el("td", "num", String(index + 1)),
      el("td", "", segment.text),
      el("td", "num", seconds(segment.estimated_duration)),
      el("td", "num", seconds(segment.pause_after)),
    );
    return row;
  });
  if (!rows.length) {
    const row = el("tr");
    const cell = el("td", "muted", "No speech plan for this reply.");
    cell.colSpan = 4;
    row.append(cell);
    rows.push(row);
  }
  $("speech-segments").replaceChildren(...rows);
  $("speech-total").textContent = segments.length ? seconds(total) : "–";
}
