// The learning panel: your consent, your runs and the adapter answering you now;
// for administrators, the runs awaiting approval (Approve, Reject) and the summary.
// It loads when opened: a server without the learning plugin answers 404, and the
// panel says learning is not available.
import { api } from "/static/api.js";
import { $, confirmAction, el, notify, timeElement } from "/static/dom.js";
import { state } from "/static/state.js";

const STATUS_TEXT = {
  awaiting_approval: "awaiting approval",
  rolled_back: "rolled back",
};

function number(value) {
  return typeof value === "number" && Number.isFinite(value);
}

function runFacts(run) {
  const facts = [];
  const m = run.metrics || {};
  if (number(m.heldout_perplexity_before) && number(m.heldout_perplexity_after)) {
    facts.push(
      `held-out perplexity ${m.heldout_perplexity_before.toFixed(2)} → ${m.heldout_perplexity_after.toFixed(2)}`,
    );
  }
  if (number(run.energy_wh)) {
    const estimate = run.energy && run.energy.estimated ? " (estimate)" : "";
    facts.push(`${run.energy_wh.toFixed(2)} Wh${estimate}`);
  }
  const checked = run.validation;
  if (checked && number(checked.heldout_perplexity_base) && number(checked.heldout_perplexity_adapter)) {
    const verdict = checked.passed ? "validated" : "regressed";
    facts.push(
      `${verdict} ${String(checked.at).slice(0, 10)}: ${checked.heldout_perplexity_base.toFixed(2)} → ${checked.heldout_perplexity_adapter.toFixed(2)} on newer turns`,
    );
  }
  return facts.join(" · ");
}

function runItem(run, testid) {
  const li = el("li");
  li.dataset.testid = testid;
  li.dataset.runId = run.id;
  li.dataset.status = run.status;
  const body = el("div", "run-body");
  const head = el("span", "run-head");
  head.append(el("code", "run-id", run.id), " ");
  head.append(el("span", "run-status", STATUS_TEXT[run.status] || run.status));
  body.append(head);
  if (run.username) body.append(el("span", "run-meta", `for ${run.username}`));
  const facts = runFacts(run);
  if (facts) body.append(el("span", "run-meta", facts));
  if (run.reason) body.append(el("span", "run-meta", run.reason));
  body.append(timeElement(run.created_at));
  li.append(body);
  return li;
}

function queueItem(run) {
  const li = runItem(run, "learning-queue-item");
  const actions = el("div", "actions");
  for (const [action, label, kind] of [
    ["approve-run", "Approve", "btn-primary"],
    ["reject-run", "Reject", "btn-danger"],
  ]) {
    const button = el("button", `btn btn-small ${kind}`, label);
    button.type = "button";
    button.dataset.action = action;
    button.setAttribute("aria-label", `${label} ${run.id}`);
    actions.append(button);
  }
  li.append(actions);
  return li;
}

function showConsent(value) {
  $("learning-consent").checked = Boolean(value.enabled);
  const changed = $("learning-changed");
  changed.replaceChildren();
  if (value.changed_at) changed.append(timeElement(value.changed_at, value.enabled ? "On since " : "Off since "));
}

function showMine(mine) {
  showConsent(mine);
  const version = mine.adapter ? mine.adapter.slice(mine.adapter.indexOf("@") + 1) : null;
  $("learning-adapter").textContent = version
    ? `Answering you now: your adapter from ${version}.`
    : "Answering you now: the base model.";
  $("learning-runs").replaceChildren(...mine.runs.map((run) => runItem(run, "learning-run")));
  $("learning-runs-empty").hidden = mine.runs.length > 0;
}

function summaryText(summary) {
  const runs = Object.values(summary.runs).reduce((sum, n) => sum + n, 0);
  const estimate = summary.estimated ? " (with estimates)" : "";
  let text = `${runs} run${runs === 1 ? "" : "s"} · ${summary.energy_wh.toFixed(2)} Wh${estimate}`;
  text += ` · ${summary.co2e_g.toFixed(2)} gCO2e · ${summary.awaiting_approval} awaiting approval`;
  if (summary.regressed.length) text += ` · ${summary.regressed.length} regressed`;
  if (summary.running) text += ` · running ${summary.running.run_id}`;
  return text;
}

async function refreshQueue() {
  const [queued, summary] = await Promise.all([
    api("/admin/learning/runs?status=awaiting_approval"),
    api("/admin/learning/summary"),
  ]);
  $("learning-queue").replaceChildren(...queued.runs.map(queueItem));
  $("learning-queue-empty").hidden = queued.runs.length > 0;
  $("learning-summary").textContent = summaryText(summary);
}

export async function refreshLearning() {
  if (!state.user) return;
  try {
    showMine(await api("/learning"));
    $("learning-unavailable").hidden = true;
    $("learning-body").hidden = false;
    $("learning-admin").hidden = !state.user.is_admin;
    if (state.user.is_admin) await refreshQueue();
  } catch (error) {
    if (error.status === 404) {
      $("learning-unavailable").hidden = false;
      $("learning-body").hidden = true;
    } else if (error.status !== 401) {
      notify(`Learning: ${error.message}`, "error");
    }
  }
}

export async function onConsentChange() {
  const box = $("learning-consent");
  const enabled = box.checked;
  box.disabled = true;
  try {
    showConsent(await api("/learning/consent", { method: "PUT", body: { enabled } }));
    notify(enabled ? "Learning is on." : "Learning is off: none of your text will be trained on.");
  } catch (error) {
    box.checked = !enabled;
    if (error.status !== 401) notify(`Could not change learning: ${error.message}`, "error");
  } finally {
    box.disabled = false;
  }
}

export async function onQueueClick(event) {
  const button = event.target.closest("button[data-action]");
  const item = button && button.closest("li");
  if (!item) return;
  const runId = item.dataset.runId;
  const approve = button.dataset.action === "approve-run";
  if (
    !approve &&
    !(await confirmAction("Reject this run?", `The adapter of ${runId} will never answer anyone.`, "Reject"))
  ) {
    return;
  }
  button.disabled = true;
  try {
    const path = `/admin/learning/runs/${encodeURIComponent(runId)}/${approve ? "approve" : "reject"}`;
    const run = await api(path, { method: "POST" });
    notify(approve ? `${run.id} approved: it answers ${run.username || "its user"} now.` : `${run.id} rejected.`);
  } catch (error) {
    if (error.status !== 401) notify(`Could not ${approve ? "approve" : "reject"} ${runId}: ${error.message}`, "error");
  }
  await refreshLearning();
}

export function resetLearning() {
  $("learning-panel").open = false;
  $("learning-consent").checked = false;
  $("learning-changed").replaceChildren();
  $("learning-adapter").textContent = "";
  $("learning-runs").replaceChildren();
  $("learning-queue").replaceChildren();
  $("learning-summary").textContent = "";
  $("learning-admin").hidden = true;
}
