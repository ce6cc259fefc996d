// Add credits: a pack (GET /v1/packs) or a custom amount, through Checkout (POST .../checkout).
// The browser goes to the payment page; the credits land when the payment provider's signed
// webhook reaches the API, so on the way back the balance is read again until it has moved.

import { accountPath, request } from "./api.js";
import { $, el, showError, showNotice } from "./dom.js";

const BEFORE = "credit-ledger.balance-version";
const MAY_BUY = new Set(["operator", "admin"]);

export async function loadPacks(role, onError) {
  const panel = $("credits-panel");
  if (!MAY_BUY.has(role)) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const packs = await request("/v1/packs");
  $("packs").replaceChildren(...packs.data.map((p) => el("button", {
    type: "button", class: "pack", dataset: { pack: p.id },
    onclick: () => checkout({ pack: p.id }).catch(onError),
  }, `${p.id}: ${p.credits} credits` + (p.bonus_ucr ? ` + ${p.bonus} bonus` : "") + ` for ${p.price} ${p.currency}`)));
}

export function wireCustomAmount(onError) {
  $("custom-credits").addEventListener("submit", (event) => {
    event.preventDefault();
    checkout({ credits_amount: $("custom-amount").value.trim() }).catch(onError);
  });
}

async function checkout(choice) {
  showNotice("");
  showError("");
  const here = `${location.origin}/dashboard`;
  const session = await request(accountPath("/checkout"), {
    method: "POST", body: { ...choice, success_url: `${here}?checkout=paid`, cancel_url: `${here}?checkout=cancelled` },
  });
  sessionStorage.setItem(BEFORE, $("balance").dataset.version || "");
  location.assign(session.checkout_url);
}

// Back from Checkout: say so, and reload the balance until the payment has landed (or give up).
export async function afterCheckout(reloadBalance) {
  const outcome = new URLSearchParams(location.search).get("checkout");
  if (!outcome) return;
  history.replaceState(null, "", location.pathname);
  const before = sessionStorage.getItem(BEFORE);
  sessionStorage.removeItem(BEFORE);
  if (outcome !== "paid") {
    showNotice("Checkout cancelled: nothing was charged.");
    return;
  }
  showNotice("Payment received: adding the credits…");
  for (let i = 0; i < 30; i++) {
    const balance = await reloadBalance();
    if (String(balance.version) !== before) {
      showNotice("Credits added.");
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  showNotice("Payment received; the credits will show once it is confirmed.");
  return false;
}
