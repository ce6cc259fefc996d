// Alerts raised for the account, newest first (GET .../notifications).

import { accountPath, request } from "./api.js";
import { $, el, when } from "./dom.js";

export async function loadNotifications() {
  const page = await request(accountPath("/notifications?limit=20"));
  const items = page.data.map((n) => el("li", { class: `level-${n.level}` },
    `${when(n.created_at)}: ${n.message}`));
  $("notifications").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "No alerts.")]));
}
