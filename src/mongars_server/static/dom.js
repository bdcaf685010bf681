// Small DOM helpers shared by the console modules. Text is always set with
// textContent, never parsed as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function parseTime(value) {
  if (!value) return null;
  // Naive timestamps from the server are UTC.
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function timeElement(value, prefix = "") {
  const node = document.createElement("time");
  const date = parseTime(value);
  if (date) {
    node.dateTime = date.toISOString();
    node.textContent = prefix + date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  } else {
    node.textContent = prefix + (value || "");
  }
  return node;
}

export function seconds(value) {
  return typeof value === "number" ? `${value.toFixed(2)} s` : "–";
}

export function showError(box, error) {
  box.replaceChildren(el("span", "", error.message || String(error)));
  if (error.items && error.items.length) {
    const list = el("ul");
    for (const item of error.items) list.append(el("li", "", item));
    box.append(list);
  }
  box.hidden = false;
}

export function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
}

let noticeTimer = null;
export function notify(message, kind = "info") {
  const box = $("notice");
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    box.hidden = true;
  }, kind === "error" ? 10000 : 5000);
}

// Ask a yes/no question in the confirm dialog; resolves true for the OK button.
export function confirmAction(title, text, okLabel) {
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
