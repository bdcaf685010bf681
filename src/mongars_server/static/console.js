// monGARS web console: log in, chat over the websocket (streamed token by token),
// browse history and memories. Plain JS, no build step; the page's CSP allows
// only same-origin scripts, so nothing here is inline and all text is set with
// textContent (never innerHTML) so replies and memories cannot inject markup.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "mongars.token";
  const EXPIRES_KEY = "mongars.expires_at";
  const SESSION_ID = "web";
  const HISTORY_LIMIT = 50;
  const SEARCH_LIMIT = 20;
  const MAX_MESSAGE = 1000;
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
    memoryQuery: "",
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

  function userBubble(text) {
    const bubble = el("div", "msg user");
    bubble.dataset.testid = "user-message";
    bubble.append(el("span", "visually-hidden", "You: "), el("span", "msg-text", text));
    transcriptAppend(bubble);
  }

  function assistantBubble(origin = "here") {
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
    transcriptAppend(bubble);
    return bubble;
  }

  function bubbleText(bubble) {
    return bubble.querySelector(".msg-text");
  }

  function appendDelta(bubble, delta) {
    bubble.dataset.state = "streaming";
    bubbleText(bubble).firstChild.appendData(delta);
    const box = $("transcript");
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
  }

  function finishBubble(bubble, reply) {
    bubbleText(bubble).firstChild.data = reply.response;
    bubble.dataset.state = "final";
    bubble.dataset.turnId = reply.turn_id;
    bubble.setAttribute("aria-busy", "false");
    if (typeof reply.confidence === "number") {
      const meta = el("small", "msg-meta", `Confidence ${Math.round(reply.confidence * 100)}%`);
      bubble.append(meta);
    }
    state.turns.set(reply.turn_id, bubble);
  }

  function failBubble(bubble, message) {
    bubbleText(bubble).firstChild.data = message;
    bubble.dataset.state = "error";
    bubble.setAttribute("aria-busy", "false");
  }

  function setBusy(busy) {
    state.busy = busy;
    $("chat-send").disabled = busy;
    $("chat-send").textContent = busy ? "Sending…" : "Send";
  }

  async function sendMessage(message) {
    clearError($("chat-error"));
    userBubble(message);
    const bubble = assistantBubble();
    setBusy(true);
    if (socket.open) {
      const id = newId();
      state.pending.set(id, bubble);
      if (socket.send({ id, type: "chat.send", data: { message, session_id: SESSION_ID } })) return;
      state.pending.delete(id);
    }
    // The socket is down: ask over HTTP instead (no streaming).
    try {
      const reply = await api("/conversation/chat", {
        method: "POST",
        body: { message, session_id: SESSION_ID },
      });
      const shown = state.turns.get(reply.turn_id);
      if (shown) {
        // The websocket came back and already delivered this reply as "from elsewhere".
        bubble.remove();
        shown.dataset.origin = "here";
        shown.querySelector(".msg-meta")?.remove();
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
        finishBubble(bubble || assistantBubble("elsewhere"), data);
        replyArrived(data);
        break;
      }
      case "chat.error": {
        const bubble = settle(data.ref);
        if (bubble) failBubble(bubble, "No reply.");
        showError($("chat-error"), new ApiError(0, data.message || "The reply failed.", data.code));
        break;
      }
      default:
        break; // events added by newer servers are ignored
    }
  }

  function replyArrived(reply) {
    renderDetails(reply);
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

  // --------------------------------------------------------------- history

  function renderHistory(items) {
    const list = $("history-list");
    list.replaceChildren(
      ...items.map((item) => {
        const li = el("li");
        li.dataset.id = String(item.id);
        li.dataset.testid = "history-item";
        li.append(
          el("div", "q", item.query),
          el("div", "r", item.response),
          timeElement(item.timestamp),
        );
        return li;
      }),
    );
    $("history-empty").hidden = items.length > 0;
  }

  async function refreshHistory() {
    if (!state.user) return;
    const query = new URLSearchParams({ user_id: state.user.username, limit: String(HISTORY_LIMIT) });
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
    state.pending.clear();
    state.turns.clear();
    state.memoryQuery = "";
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EXPIRES_KEY);
    setBusy(false);
    $("transcript").replaceChildren($("transcript-empty"));
    $("transcript-empty").hidden = false;
    $("history-list").replaceChildren();
    $("memory-list").replaceChildren();
    $("memory-caption").textContent = "";
    $("memory-search-input").value = "";
    $("details-empty").hidden = false;
    $("details-body").hidden = true;
    clearError($("chat-error"));
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

    const input = $("chat-input");
    const updateCount = () => {
      $("chat-count").textContent = `${input.value.length} / ${MAX_MESSAGE}`;
    };
    input.addEventListener("input", updateCount);
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
      input.value = "";
      updateCount();
      sendMessage(message.slice(0, MAX_MESSAGE));
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
    const dialog = $("confirm-dialog");
    $("memory-delete-all").addEventListener("click", () => {
      dialog.returnValue = "";
      dialog.showModal();
    });
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "confirm") deleteAllMemories();
    });

    window.addEventListener("online", () => socket.reconnectNow());
  }

  async function boot() {
    wire();
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
