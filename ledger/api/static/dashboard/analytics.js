// Spend this month against the budget, projected month-end, run-out, cost by model and by
// deployment, the most expensive requests and suggestions (GET .../analytics?days=).

import { accountPath, request } from "./api.js";
import { $, el, fillTable, setText, when } from "./dom.js";
import { drawTrend } from "./trend.js";

export async function loadAnalytics(days) {
  const a = await request(accountPath(`/analytics?days=${days}`));
  setText("this-period", a.this_period);
  setText("budget", a.monthly_budget ?? "none set");
  setText("daily-average", a.daily_average);
  setText("projected", a.projected_month_end);
  setText("runout", a.runout_at ? when(a.runout_at) : "not at this rate");
  setText("window-total", a.window_total);
  // The read models trail the ledger by lag_ms (0 when caught up); the balance above never does.
  $("freshness").textContent = a.lag_ms ? `(figures ${Math.ceil(a.lag_ms / 1000)} s behind the ledger)` : "";
  showBudgetUse(a);
  for (const button of document.querySelectorAll("[data-days]")) {
    button.classList.toggle("chosen", button.dataset.days === String(days));
  }
  drawTrend(a);
  fillTable($("by-model"), [
    { title: "Model", value: (m) => m.model },
    { title: "Requests", value: (m) => m.events, num: true },
    { title: "Tokens in / out", value: (m) => `${m.input_tokens} / ${m.output_tokens}`, num: true },
    { title: "Credits", value: (m) => m.credits, num: true },
  ], a.by_model, { empty: "No model usage in this window." });
  fillTable($("by-deployment"), [
    { title: "Deployment", value: (d) => d.deployment_id },
    { title: "Instance", value: (d) => d.instance_type ?? "–" },
    { title: "Credits", value: (d) => d.credits, num: true },
  ], a.by_deployment, { empty: "No deployments in this window." });
  fillTable($("top-requests"), [
    { title: "When", value: (r) => when(r.occurred_at) },
    { title: "Operation", value: (r) => r.operation },
    { title: "Flow / agent", value: (r) => [r.flow, r.agent].filter(Boolean).join(" / ") || "–" },
    { title: "Execution", value: (r) => r.execution_id },
    { title: "Credits", value: (r) => r.credits, num: true },
  ], a.top_requests, { empty: "No requests in this window." });
  const tips = a.suggestions.map((s) => el("li", { dataset: { kind: s.kind } }, s.message));
  $("suggestions").replaceChildren(...(tips.length ? tips : [el("li", { class: "empty" }, "Nothing to suggest.")]));
  return a;
}

// Share of the budget spent, in whole percent from the integer µcr (no float arithmetic on money).
function showBudgetUse(a) {
  const bar = $("budget-used");
  if (!a.monthly_budget_ucr) {
    bar.hidden = true;
    return;
  }
  const pct = (BigInt(a.this_period_ucr) * 100n) / BigInt(a.monthly_budget_ucr);
  bar.value = Number(pct > 100n ? 100n : pct);
  bar.title = `${pct}% of the monthly budget`;
  bar.hidden = false;
}
