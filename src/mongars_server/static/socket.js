// The chat websocket: one connection to /ws/chat/, re-opened with backoff and a
// fresh ticket (tickets are single use) whenever it closes while the user is
// logged in; a heartbeat watchdog replaces a socket that has gone silent.
import { api, newId } from "/static/api.js";
import { $ } from "/static/dom.js";

const BACKOFF_MAX_MS = 30000;

function setConnection(stateName, label) {
  const badge = $("connection-status");
  badge.dataset.state = stateName;
  badge.textContent = label;
}

// ``onEvent(event)`` gets every frame but the connection's own (connected, ping,
// pong); ``onDown()`` is called when an open socket goes away.
export class ChatSocket {
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
