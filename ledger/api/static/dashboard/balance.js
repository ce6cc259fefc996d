// Balance, available / reserved / debt and the balance by source (GET .../balance).
// Amounts are the API's decimal strings, shown as they are.

import { accountPath, request } from "./api.js";
import { $, el, setText } from "./dom.js";

const SOURCES = ["allowance", "purchase", "promotion", "refund"];

export async function loadBalance() {
  const b = await request(accountPath("/balance"));
  setText("balance", b.balance);
  setText("available", b.available);
  setText("reserved", b.reserved);
  setText("debt", b.debt);
  setText("allowance", b.monthly_allowance);
  setText("plan", b.plan);
  setText("status", b.status);
  $("balance").dataset.version = String(b.version);
  $("by-source").replaceChildren(...SOURCES.flatMap((s) => [
    el("dt", {}, s), el("dd", { id: `source-${s}` }, b.by_source[s]),
  ]));
  return b;
}
