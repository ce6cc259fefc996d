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

let role = null;
let days = 30;

const onError = (error) => showError(describe(error));

function showSignIn(message) {
  $("board").hidden = true;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  showError(message || "");
}

// Who the key is; null (and the reason shown) when the API refuses it.
async function identify(key, account) {
  try {
    const me = await request("/v1/me", { key });
    const id = me.account_id || account;
    if (!id) {
      showSignIn("This is an operator key: enter the account to show.");
      return null;
    }
    return { me, account: id };
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

async function open(identity) {
  role = identity.me.role;
  $("sign-in").hidden = true;
  $("board").hidden = false;
  $("who").textContent = `${identity.account} · ${role} key ${identity.me.key_id}`;
  $("who").hidden = false;
  $("sign-out").hidden = false;
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
