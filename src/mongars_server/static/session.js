// The session: log in or register, change the password, log out, and what
// starting and ending a session shows, loads and clears.
import { api, ApiError } from "/static/api.js";
import { setBusy } from "/static/chat.js";
import {
  openConversation,
  pickConversation,
  refreshConversations,
  refreshHistory,
} from "/static/conversations.js";
import { $, clearError, notify, showError } from "/static/dom.js";
import { resetLearning } from "/static/learning.js";
import { hideLimit, loadLimits } from "/static/limits.js";
import { refreshMemories } from "/static/memories.js";
import { state } from "/static/state.js";
import { clearTranscript } from "/static/transcript.js";

const TOKEN_KEY = "mongars.token";
const EXPIRES_KEY = "mongars.expires_at";
const USERNAME_RE = /^[A-Za-z0-9_-]{1,150}$/;

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
  state.socket.start();
  await Promise.all([loadLimits(), refreshConversations()]);
  await openConversation(pickConversation());
  refreshHistory();
  refreshMemories();
  $("chat-input").focus();
}

export function endSession(reason, kind = "error") {
  const wasIn = state.token !== null;
  state.socket.stop();
  clearTimeout(state.expiryTimer);
  state.token = null;
  state.user = null;
  state.memoryQuery = "";
  state.conversations = [];
  state.historyItems = [];
  state.ratingsHeard.clear();
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
  resetLearning();
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

export async function onAuthSubmit(event) {
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

export function openPasswordDialog() {
  $("password-old").value = "";
  $("password-new").value = "";
  clearError($("password-error"));
  $("password-dialog").showModal();
  $("password-old").focus();
}

export async function onPasswordSubmit(event) {
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
  state.socket.stop();
  try {
    await api("/user/change-password", {
      method: "POST",
      body: { old_password: oldPassword, new_password: newPassword },
    });
  } catch (error) {
    $("password-ok").disabled = false;
    if (error.status !== 401) {
      showError(box, error);
      state.socket.start();
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

// At boot: resume the session of this tab (its token is in sessionStorage), or show the login form.
export async function resumeSession() {
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
