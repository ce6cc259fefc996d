// Recent activity, a page at a time (GET .../activities?limit=&cursor=): "Older" follows the
// page's next_cursor, "Newest" goes back to the first page.

import { accountPath, request } from "./api.js";
import { $, fillTable, when } from "./dom.js";

export const PAGE_SIZE = 10;

let pageNumber = 1;
let nextCursor = null;

export async function loadActivities(cursor = null) {
  const query = `?limit=${PAGE_SIZE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
  const page = await request(accountPath(`/activities${query}`));
  fillTable($("activities"), [
    { title: "When", value: (a) => when(a.created_at) },
    { title: "Kind", value: (a) => a.kind },
    { title: "Operation", value: (a) => a.operation },
    { title: "Amount", value: (a) => a.amount, num: true },
    { title: "Balance after", value: (a) => a.balance_after, num: true },
  ], page.data, {
    empty: page.lag_ms ? "Catching up with the ledger…" : "No activity yet.",
    rowProps: (a) => ({ class: "activity", dataset: { id: a.id, version: String(a.version) } }),
  });
  nextCursor = page.has_more ? page.next_cursor : null;
  $("activity-older").disabled = !nextCursor;
  $("activity-newest").disabled = !cursor;
  $("activity-page").textContent = `page ${pageNumber}`;
}

export function wireActivities(onError) {
  $("activity-older").addEventListener("click", () => {
    if (!nextCursor) return;
    pageNumber += 1;
    loadActivities(nextCursor).catch(onError);
  });
  $("activity-newest").addEventListener("click", () => {
    pageNumber = 1;
    loadActivities().catch(onError);
  });
}
