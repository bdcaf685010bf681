// monGARS web console: log in, keep several conversations, chat over the websocket
// (streamed token by token, stoppable), browse history and memories. Plain JS
// modules, no build step; the page's CSP allows only same-origin scripts, so
// nothing here is inline. Text is set with textContent and replies are rendered
// by markdown.js as DOM nodes (never innerHTML), so replies and memories cannot
// inject markup.
import { renderMarkdown } from "/static/markdown.js";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "mongars.token";
  const EXPIRES_KEY = "mongars.expires_at";
  const CONVERSATION_KEY = "mongars.conversation";
  const HISTORY_LIMIT = 50;
  const SEARCH_LIMIT = 20;
  const DEFAULT_LIMIT = 4000; // until GET /api/v1/limits answers
  const COUNTER_FROM = 0.8; // show the character counter from 80 % of the limit
  const USERNAME_RE = /^[A-Za-z0-9_-]{1,150}$/;
  const BACKOFF_MAX_MS = 30000;

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    user: null,
    expiryTimer: null,
    busy: false,
    pending: new Map(), // client frame id -> assistant bubble awaiting its reply
    turns: new Map(), // turn_id -> assistant bubble already shown
    running: null, // frame id of the websocket turn that Stop would stop
    asked: new WeakMap(), // assistant bubble -> the message it answers
    raw: new WeakMap(), // assistant bubble -> the reply text as sent (for Copy)
    memoryQuery: "",
    sessionId: null, // the open conversation
    conversations: [],
    historyItems: [],
    limit: DEFAULT_LIMIT,
  };

  // ---------------------------------------------------------------- helpers

  class ApiError extends Error {
    constructor(status, message, code = null, items = []) {
      super(message);
      this.status = status;
      this.code = code;
      this.items = items; // field-level messages of a 422
    }
  }

  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return "c-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function fieldName(loc) {
    if (!Array.isArray(loc)) return "";
    return loc.filter((part) => !["body", "query", "path"].includes(part)).join(".");
  }

  // Turn an error body ({detail, code}; a 422 detail may be a list of {loc, msg}) into an ApiError.
  function errorFrom(response, body) {
    const detail = body && body.detail;
    const code = (body && body.code) || null;
    if (Array.isArray(detail)) {
      const items = detail.map((e) => {
        const field = fieldName(e && e.loc);
        const msg = (e && e.msg) || String(e);
        return field ? `${field}: ${msg}` : msg;
      });
      return new ApiError(response.status, "Please correct the following:", code, items);
    }
    if (typeof detail === "string" && detail) return new ApiError(response.status, detail, code);
    const reason = response.statusText ? ` ${response.statusText}` : "";
    return new ApiError(response.status, `Request failed (${response.status}${reason}).`, code);
  }

  async function api(path, { method = "GET", body, auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "Cannot reach the server. Check your connection and try again.", "network");
    }
    const text = response.status === 204 ? "" : await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = errorFrom(response, data);
      if (response.status === 401 && auth && state.token) {
        endSession("Your session has ended. Please log in again.");
      }
      throw error;
    }
    return data;
  }

  function parseTime(value) {
    if (!value) return null;
    // Naive timestamps from the server are UTC.
    const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
    const date = new Date(text);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function timeElement(value, prefix = "") {
    const el = document.createElement("time");
    const date = parseTime(value);
    if (date) {
      el.dateTime = date.toISOString();
      el.textContent = prefix + date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    } else {
      el.textContent = prefix + (value || "");
    }
    return el;
  }

  function seconds(value) {
    return typeof value === "number" ? `${value.toFixed(2)} s` : "–";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showError(box, error) {
    box.replaceChildren(el("span", "", error.message || String(error)));
    if (error.items && error.items.length) {
      const list = el("ul");
      for (const item of error.items) list.append(el("li", "", item));
      box.append(list);
    }
    box.hidden = false;
  }

  function clearError(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  let noticeTimer = null;
  function notify(message, kind = "info") {
    const box = $("notice");
    box.textContent = message;
    box.dataset.kind = kind;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      box.hidden = true;
    }, kind === "error" ? 10000 : 5000);
  }

  // ------------------------------------------------------------- websocket

  // One websocket to /ws/chat/, re-opened with backoff and a fresh ticket
  // (tickets are single use) whenever it closes while the user is logged in.
  class ChatSocket {
    constructor(onEvent, onDown) {
      this.onEvent = onEvent;
      this.onDown = onDown;
      this.ws = null;
      this.ready = false;
      this.stopped = true;
      this.attempt = 0;
      this.retryTimer = null;
      this.watchdog = null;
      this.heartbeatMs = 30000;
      this.lastSeen = 0;
      this.generation = 0; // bumped by start/stop so a stale connect() gives up
      this.connecting = false;
    }

    get open() {
      return this.ready && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
    }

    start() {
      this.stopped = false;
      this.attempt = 0;
      this.generation += 1;
      this.connecting = false;
      this.connect();
    }

    stop() {
      this.stopped = true;
      this.generation += 1;
      this.connecting = false;
      clearTimeout(this.retryTimer);
      this.drop(1000, "logout", false);
      setConnection("offline", "Offline");
    }

    reconnectNow() {
      if (this.stopped || this.ws || this.connecting) return;
      clearTimeout(this.retryTimer);
      this.connect();
    }

    async connect() {
      if (this.stopped || this.ws || this.connecting) return;
      const generation = this.generation;
      this.connecting = true;
      setConnection("connecting", "Connecting…");
      let ticket;
      try {
        ticket = (await api("/auth/ws/ticket", { method: "POST" })).ticket;
      } catch (error) {
        if (generation !== this.generation) return;
        this.connecting = false;
        if (error.status !== 401) this.scheduleReconnect();
        return;
      }
      if (generation !== this.generation) return;
      this.connecting = false;
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${scheme}//${location.host}/ws/chat/?t=${encodeURIComponent(ticket)}`);
      this.ws = ws;
      this.ready = false;
      ws.onmessage = (message) => {
        if (this.ws === ws) this.receive(message);
      };
      ws.onclose = () => {
        if (this.ws === ws) this.drop(1000, "", true);
      };
    }

    // Forget the current socket; tell the page and retry unless it was a logout.
    drop(code, reason, retry) {
      const ws = this.ws;
      this.ws = null;
      this.ready = false;
      clearInterval(this.watchdog);
      if (ws) {
        ws.onmessage = null;
        ws.onclose = null;
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
          ws.close(code, reason);
        }
        this.onDown();
      }
      if (retry && !this.stopped) this.scheduleReconnect();
    }

    scheduleReconnect() {
      if (this.stopped) return;
      const base = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** this.attempt);
      const delay = Math.round(base * (0.5 + Math.random() / 2));
      this.attempt += 1;
      setConnection("offline", `Offline — retrying in ${Math.ceil(delay / 1000)} s`);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    receive(message) {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        console.warn("monGARS: ignoring a websocket frame that is not JSON");
        return;
      }
      this.lastSeen = Date.now();
      const data = event.data || {};
      switch (event.type) {
        case "ws.connected":
          this.ready = true;
          this.attempt = 0;
          if (typeof data.heartbeat_s === "number" && data.heartbeat_s > 0) {
            this.heartbeatMs = data.heartbeat_s * 1000;
          }
          this.startWatchdog();
          setConnection("online", "Live");
          break;
        case "ping":
          this.send({ id: newId(), type: "pong" });
          break;
        case "pong":
          break;
        default:
          this.onEvent(event);
      }
    }

    // A socket that has gone silent for over two heartbeats is dead: replace it.
    startWatchdog() {
      clearInterval(this.watchdog);
      this.watchdog = setInterval(() => {
        if (Date.now() - this.lastSeen > 2 * this.heartbeatMs + 5000) {
          this.drop(4000, "heartbeat timeout", true);
        }
      }, Math.min(this.heartbeatMs, 10000));
    }

    send(frame) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }
  }

  function setConnection(stateName, label) {
    const badge = $("connection-status");
    badge.dataset.state = stateName;
    badge.textContent = label;
  }

  const socket = new ChatSocket(handleEvent, failPending);

  // ------------------------------------------------------------------ chat

  function transcriptAppend(node) {
    const box = $("transcript");
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    $("transcript-empty").hidden = true;
    box.append(node);
    if (nearBottom) box.scrollTop = box.scrollHeight;
  }

  function clearTranscript() {
    state.pending.clear();
    state.turns.clear();
    state.running = null;
    $("chat-stop").hidden = true;
    $("transcript").replaceChildren($("transcript-empty"));
    $("transcript-empty").hidden = false;
    $("details-empty").hidden = false;
    $("details-body").hidden = true;
  }

  function userBubble(text) {
    const bubble = el("div", "msg user");
    bubble.dataset.testid = "user-message";
    bubble.append(el("span", "visually-hidden", "You: "), el("span", "msg-text", text));
    transcriptAppend(bubble);
    return bubble;
  }

  // ``message`` is what the user asked, kept for "Regenerate".
  function assistantBubble(origin = "here", message = "") {
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

  function appendDelta(bubble, delta) {
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
  function finishBubble(bubble, reply) {
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
    if (typeof reply.confidence === "number") {
      bubble.append(el("small", "msg-meta", `Confidence ${Math.round(reply.confidence * 100)}%`));
    }
    const actions = el("div", "msg-actions");
    actions.append(actionButton("Copy", "copy", "copy-reply"));
    bubble.append(actions);
    if (reply.turn_id) state.turns.set(reply.turn_id, bubble);
    markLastReply();
  }

  // Only the newest reply can be regenerated.
  function markLastReply() {
    for (const old of $("transcript").querySelectorAll("[data-action='regenerate']")) old.remove();
    const finals = $("transcript").querySelectorAll(".msg.assistant[data-state='final']");
    const last = finals[finals.length - 1];
    if (!last || !state.asked.get(last)) return;
    last.querySelector(".msg-actions").append(actionButton("Regenerate", "regenerate", "regenerate-reply"));
  }

  function failBubble(bubble, message) {
    bubbleText(bubble).replaceChildren(document.createTextNode(message));
    bubble.dataset.state = "error";
    bubble.setAttribute("aria-busy", "false");
  }

  function stopBubble(bubble) {
    bubble.dataset.state = "stopped";
    bubble.setAttribute("aria-busy", "false");
    const meta = el("small", "msg-meta", "Stopped. Nothing of this turn was saved.");
    meta.dataset.testid = "reply-stopped";
    bubble.append(meta);
  }

  function setBusy(busy) {
    state.busy = busy;
    $("chat-send").disabled = busy;
    $("chat-send").textContent = busy ? "Sending…" : "Send";
    if (!busy) {
      state.running = null;
      $("chat-stop").hidden = true;
    }
  }

  async function sendMessage(message) {
    clearError($("chat-error"));
    const sessionId = state.sessionId;
    userBubble(message);
    const bubble = assistantBubble("here", message);
    setBusy(true);
    if (socket.open) {
      const id = newId();
      state.pending.set(id, bubble);
      if (socket.send({ id, type: "chat.send", data: { message, session_id: sessionId } })) {
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

  function stopReply() {
    const ref = state.running;
    if (ref === null) return;
    socket.send({ id: newId(), type: "chat.stop", data: { ref } });
  }

  async function copyReply(bubble) {
    const text = state.raw.get(bubble) ?? bubbleText(bubble).textContent;
    try {
      await navigator.clipboard.writeText(text);
      notify("Reply copied.");
    } catch {
      notify("Could not copy: the browser refused access to the clipboard.", "error");
    }
  }

  // Regenerate asks the same message again: the new reply is a new turn, and the
  // earlier one stays in the conversation (nothing is lost if the new try fails).
  function regenerate(bubble) {
    const message = state.asked.get(bubble);
    if (!message || state.busy) return;
    sendMessage(message);
  }

  // The socket closed: replies to frames sent over it will never arrive.
  function failPending() {
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

  function handleEvent(event) {
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

  function renderDetails(reply) {
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

  // --------------------------------------------------------- the message limit

  function overLimitText(length) {
    const limit = state.limit.toLocaleString("en");
    return `The message has ${length.toLocaleString("en")} characters; the limit is ${limit}. Shorten it to send it.`;
  }

  function updateCount() {
    const length = $("chat-input").value.length;
    const count = $("chat-count");
    count.textContent = `${length.toLocaleString("en")} / ${state.limit.toLocaleString("en")}`;
    count.hidden = length < COUNTER_FROM * state.limit;
    count.dataset.over = String(length > state.limit);
    if (length > state.limit) showLimit(overLimitText(length));
    else if ($("chat-limit").dataset.kind === "over") hideLimit();
  }

  function showLimit(message, kind = "over") {
    const box = $("chat-limit");
    box.textContent = message;
    box.dataset.kind = kind;
    box.hidden = false;
  }

  function hideLimit() {
    const box = $("chat-limit");
    box.hidden = true;
    box.textContent = "";
    box.dataset.kind = "";
  }

  // A paste that would take the message over the limit is refused, with the reason,
  // rather than cut silently.
  function onPaste(event) {
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

  async function loadLimits() {
    try {
      const limits = await api("/limits", { auth: false });
      if (limits && Number.isInteger(limits.max_message_chars)) state.limit = limits.max_message_chars;
    } catch (error) {
      console.warn(`monGARS: using the default message limit: ${error.message}`);
    }
    updateCount();
  }

  // ---------------------------------------------------------- conversations

  function conversationTitle(conversation) {
    return (conversation && conversation.title) || "New conversation";
  }

  function rememberConversation(sessionId) {
    localStorage.setItem(CONVERSATION_KEY, sessionId);
    const hash = `#c=${encodeURIComponent(sessionId)}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  function hashConversation() {
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
  async function refreshConversations() {
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
  async function openConversation(sessionId) {
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
      finishBubble(assistantBubble("here", turn.query), { response: turn.response });
    }
    const box = $("transcript");
    box.scrollTop = box.scrollHeight;
  }

  function draftId() {
    return newId();
  }

  // The new conversation opens at once (what is typed next goes to it); the server
  // learns of it meanwhile. Its first turn would create it too, so a 409 is fine.
  async function newConversation() {
    if (state.busy) {
      notify("Wait for the reply (or stop it) before starting a conversation.", "error");
      return;
    }
    const sessionId = draftId();
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

  function renameConversation(sessionId) {
    const conversation = state.conversations.find((c) => c.session_id === sessionId);
    const dialog = $("rename-dialog");
    $("rename-input").value = conversation ? conversation.title : "";
    dialog.dataset.sessionId = sessionId;
    clearError($("rename-error"));
    dialog.showModal();
    $("rename-input").select();
  }

  async function onRenameSubmit(event) {
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

  async function deleteConversation(sessionId) {
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

  function pickConversation() {
    const wanted = [hashConversation(), localStorage.getItem(CONVERSATION_KEY)];
    for (const id of wanted) {
      if (id && state.conversations.some((c) => c.session_id === id)) return id;
    }
    return state.conversations.length ? state.conversations[0].session_id : draftId();
  }

  async function conversationChanged(data) {
    await refreshConversations();
    if (data.change === "deleted" && data.session_id === state.sessionId && !state.busy) {
      await openConversation(pickConversation());
    }
  }

  // -------------------------------------------------------------- dialogs

  function confirmAction(title, text, okLabel) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okLabel;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    });
  }

  function openPasswordDialog() {
    $("password-old").value = "";
    $("password-new").value = "";
    clearError($("password-error"));
    $("password-dialog").showModal();
    $("password-old").focus();
  }

  async function onPasswordSubmit(event) {
    event.preventDefault();
    const oldPassword = $("password-old").value;
    const newPassword = $("password-new").value;
    const box = $("password-error");
    clearError(box);
    const problems = [];
    if (!oldPassword) problems.push("current password: enter it");
    if (newPassword.length < 8) problems.push("new password: use at least 8 characters");
    if (problems.length) {
      showError(box, new ApiError(0, "Please correct the following:", "invalid", problems));
      return;
    }
    const username = state.user.username;
    $("password-ok").disabled = true;
    // The change closes this account's websockets; don't reconnect with the old token.
    socket.stop();
    try {
      await api("/user/change-password", {
        method: "POST",
        body: { old_password: oldPassword, new_password: newPassword },
      });
    } catch (error) {
      $("password-ok").disabled = false;
      if (error.status !== 401) {
        showError(box, error);
        socket.start();
      }
      return;
    }
    $("password-ok").disabled = false;
    $("password-dialog").close();
    // The change ended every session of the account, this one included: sign in again.
    try {
      const login = await api("/auth/login", {
        method: "POST",
        body: { username, password: newPassword },
        auth: false,
      });
      await startSession(login.access_token, login.expires_in);
      notify("Password changed. Other sessions of your account have been signed out.");
    } catch (error) {
      endSession(`Password changed. Please log in again with the new password (${error.message}).`, "info");
    }
  }

  // --------------------------------------------------------------- history

  function renderHistory(items) {
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
        return li;
      }),
    );
    $("history-empty").hidden = items.length > 0;
  }

  async function refreshHistory() {
    if (!state.user) return;
    const query = new URLSearchParams({ limit: String(HISTORY_LIMIT) });
    try {
      renderHistory(await api(`/conversation/history?${query}`));
    } catch (error) {
      if (error.status !== 401) notify(`History: ${error.message}`, "error");
    }
  }

  // -------------------------------------------------------------- memories

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

  async function refreshMemories() {
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

  async function deleteMemory(button) {
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

  async function deleteAllMemories() {
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

  // ------------------------------------------------------------ the session

  async function startSession(token, expiresIn) {
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    if (typeof expiresIn === "number") {
      sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + expiresIn * 1000));
    }
    state.user = await api("/user/me");
    const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY));
    clearTimeout(state.expiryTimer);
    if (expiresAt) {
      const ms = Math.min(expiresAt - Date.now(), 2 ** 31 - 1);
      state.expiryTimer = setTimeout(() => endSession("Your session has expired. Please log in again."), ms);
    }
    $("whoami").textContent = state.user.username;
    $("auth-panel").hidden = true;
    $("app").hidden = false;
    $("session-bar").hidden = false;
    clearError($("auth-error"));
    $("auth-password").value = "";
    socket.start();
    await Promise.all([loadLimits(), refreshConversations()]);
    await openConversation(pickConversation());
    refreshHistory();
    refreshMemories();
    $("chat-input").focus();
  }

  function endSession(reason, kind = "error") {
    const wasIn = state.token !== null;
    socket.stop();
    clearTimeout(state.expiryTimer);
    state.token = null;
    state.user = null;
    state.memoryQuery = "";
    state.conversations = [];
    state.historyItems = [];
    state.sessionId = null;
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EXPIRES_KEY);
    setBusy(false);
    clearTranscript();
    $("conversation-list").replaceChildren();
    $("chat-title").textContent = "New conversation";
    $("history-list").replaceChildren();
    $("memory-list").replaceChildren();
    $("memory-caption").textContent = "";
    $("memory-search-input").value = "";
    clearError($("chat-error"));
    hideLimit();
    $("app").hidden = true;
    $("session-bar").hidden = true;
    $("auth-panel").hidden = false;
    if (wasIn && reason) notify(reason, kind);
    $("auth-username").focus();
  }

  function validateCredentials(mode, username, password) {
    const problems = [];
    if (!username) problems.push("username: enter your username");
    else if (mode === "register" && !USERNAME_RE.test(username)) {
      problems.push("username: use 1–150 letters, digits, “_” or “-”");
    }
    if (!password) problems.push("password: enter your password");
    else if (mode === "register" && password.length < 8) {
      problems.push("password: use at least 8 characters");
    } else if (mode === "register" && password.length > 1024) {
      problems.push("password: use at most 1024 characters");
    }
    $("auth-username").setAttribute("aria-invalid", String(problems.some((p) => p.startsWith("username"))));
    $("auth-password").setAttribute("aria-invalid", String(problems.some((p) => p.startsWith("password"))));
    return problems;
  }

  async function onAuthSubmit(event) {
    event.preventDefault();
    const mode = event.submitter && event.submitter.value === "register" ? "register" : "login";
    const username = $("auth-username").value.trim();
    const password = $("auth-password").value;
    const box = $("auth-error");
    clearError(box);
    $("notice").hidden = true;
    const problems = validateCredentials(mode, username, password);
    if (problems.length) {
      showError(box, new ApiError(0, "Please correct the following:", "invalid", problems));
      return;
    }
    const buttons = [$("login-button"), $("register-button")];
    buttons.forEach((b) => (b.disabled = true));
    try {
      if (mode === "register") {
        await api("/user/register", { method: "POST", body: { username, password }, auth: false });
        notify(`Account “${username}” created. Welcome!`);
      }
      const login = await api("/auth/login", { method: "POST", body: { username, password }, auth: false });
      await startSession(login.access_token, login.expires_in);
    } catch (error) {
      if (state.token && !state.user) endSession("");
      showError(box, error);
      $("auth-password").select();
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  // ---------------------------------------------------------------- wiring

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

    window.addEventListener("online", () => socket.reconnectNow());
  }

  async function boot() {
    wire();
    updateCount();
    const token = sessionStorage.getItem(TOKEN_KEY);
    const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY));
    if (!token || (expiresAt && expiresAt <= Date.now())) {
      endSession("");
      return;
    }
    try {
      await startSession(token);
    } catch (error) {
      if (error.status !== 401) showError($("auth-error"), error);
      endSession("");
    }
  }

  boot();
})();
