// The dashboard's start: sign in with a key (checked with GET /v1/me), then load every panel.

import { ApiError, request, session } from "./api.js";
import { loadActivities, wireActivities } from "./activity.js";
import { loadAnalytics } from "./analytics.js";
import { loadBalance } from "./balance.js";
import { afterCheckout, loadPacks, wireCustomAmount } from "./credits.js";
import { loadDeployments } from "./deployments.js";
import { $, describe, showError } from "./dom.js";
import { wireExport } from "./export.js";
import { loadNotifications } from "./notifications.js";
import { loadAccounts, wireAccounts } from "./operator.js";

let role = null;
let days = 30;

const onError = (error) => showError(describe(error));

function showSignIn(message) {
  for (const id of ["board", "operator", "who", "sign-out", "all-accounts"]) $(id).hidden = true;
  $("sign-in").hidden = false;
  showError(message || "");
}

// Who the key is; null (and the reason shown) when the API refuses it. An operator key with no
// account named gets the list of accounts (account "").
async function identify(key, account) {
  try {
    const me = await request("/v1/me", { key });
    return { me, account: me.account_id || account || "" };
  } catch (error) {
    const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
    showSignIn(refused ? `That key was not accepted: ${error.message} (HTTP ${error.status})` : describe(error));
    return null;
  }
}

async function refreshAll() {
  const results = await Promise.allSettled([
    loadBalance(), loadAnalytics(days), loadActivities(), loadDeployments(role, refreshDeployments, onError),
    loadNotifications(), loadPacks(role, onError),
  ]);
  const failed = results.find((r) => r.status === "rejected");
  showError(failed ? describe(failed.reason) : "");
}

function refreshDeployments() {
  Promise.all([loadDeployments(role, refreshDeployments, onError), loadBalance()]).then(() => showError(""), onError);
}

// Show another account (or, with "", the operator's list): the page starts again from the session.
function switchTo(account) {
  session.save(session.key(), account);
  location.replace(location.pathname);
}

async function open(identity) {
  role = identity.me.role;
  $("sign-in").hidden = true;
  $("who").textContent = `${identity.account || "all accounts"} · ${role} key ${identity.me.key_id}`;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  if (!identity.account) {
    $("operator").hidden = false;
    await loadAccounts(switchTo);
    $("operator").dataset.ready = "true";
    return;
  }
  $("all-accounts").hidden = role !== "operator";
  $("board").hidden = false;
  $("board").dataset.account = identity.account;
  await refreshAll();
  await afterCheckout(loadBalance);
  $("board").dataset.ready = "true";
}

function wire() {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    const identity = await identify(key, $("account").value.trim());
    if (!identity) return;
    session.save(key, identity.account);
    $("key").value = "";
    await open(identity);
  });
  $("sign-out").addEventListener("click", () => {
    session.clear();
    location.replace(location.pathname);
  });
  for (const button of document.querySelectorAll("[data-days]")) {
    button.addEventListener("click", () => {
      days = Number(button.dataset.days);
      loadAnalytics(days).then(() => showError(""), onError);
    });
  }
  $("all-accounts").addEventListener("click", () => switchTo(""));
  wireAccounts(switchTo, onError);
  wireActivities(onError);
  wireCustomAmount(onError);
  wireExport(onError);
}

async function start() {
  wire();
  const key = session.key();
  if (!key) {
    showSignIn();
    return;
  }
  const identity = await identify(key, session.account());
  if (identity) await open(identity);
  else session.clear();
}

start().catch(onError);
