// The operator's view: every account with its exact balance (GET /v1/accounts), a page at a time;
// "Open" shows that account's dashboard.

import { request } from "./api.js";
import { $, el, fillTable, when } from "./dom.js";

const PAGE_SIZE = 25;
let nextCursor = null;

export async function loadAccounts(onOpen, cursor = null) {
  const query = `?limit=${PAGE_SIZE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
  const page = await request(`/v1/accounts${query}`);
  fillTable($("accounts"), [
    { title: "Account", value: (a) => a.id },
    { title: "Name", value: (a) => a.name },
    { title: "Plan", value: (a) => a.plan },
    { title: "Status", value: (a) => a.status },
    { title: "Balance", value: (a) => a.balance, num: true },
    { title: "Available", value: (a) => a.available, num: true },
    { title: "Reserved", value: (a) => a.reserved, num: true },
    { title: "Debt", value: (a) => a.debt, num: true },
    { title: "Opened", value: (a) => when(a.created_at) },
    { title: "", value: (a) => el("button", { type: "button", class: "open-account", onclick: () => onOpen(a.id) }, "Open") },
  ], page.data, {
    empty: "No accounts yet.",
    rowProps: (a) => ({ class: "account", dataset: { id: a.id } }),
  });
  nextCursor = page.next_cursor;
  $("accounts-next").disabled = !nextCursor;
  $("accounts-first").disabled = !cursor;
}

export function wireAccounts(onOpen, onError) {
  $("accounts-next").addEventListener("click", () => {
    if (nextCursor) loadAccounts(onOpen, nextCursor).catch(onError);
  });
  $("accounts-first").addEventListener("click", () => loadAccounts(onOpen).catch(onError));
}
