// Deployments with their hourly cost; pause and resume for keys that may
// (POST .../deployments/{id}/pause|resume).

import { accountPath, request } from "./api.js";
import { $, el, fillTable, when } from "./dom.js";

const MAY_PAUSE = new Set(["operator", "admin", "member"]);

export async function loadDeployments(role, onChange, onError) {
  const list = await request(accountPath("/deployments"));
  const shown = list.data.filter((d) => d.status !== "stopped");
  const act = (d, action) => el("button", {
    type: "button", class: `deployment-${action}`, dataset: { deployment: d.id },
    onclick: (event) => {
      event.target.disabled = true;
      request(accountPath(`/deployments/${encodeURIComponent(d.id)}/${action}`), { method: "POST" })
        .then(onChange, onError);
    },
  }, action === "pause" ? "Pause" : "Resume");
  const columns = [
    { title: "Deployment", value: (d) => d.id },
    { title: "Instance", value: (d) => d.instance_type },
    { title: "Status", value: (d) => d.status + (d.paused_reason ? ` (${d.paused_reason})` : "") },
    { title: "Per hour", value: (d) => d.hourly, num: true },
    { title: "Hours", value: (d) => d.hours_charged, num: true },
    { title: "Credits so far", value: (d) => d.credits, num: true },
    { title: "Started", value: (d) => when(d.started_at) },
  ];
  if (MAY_PAUSE.has(role)) {
    columns.push({ title: "", value: (d) => act(d, d.status === "paused" ? "resume" : "pause") });
  }
  fillTable($("deployments"), columns, shown, {
    empty: "No deployments running.",
    rowProps: (d) => ({ class: "deployment", dataset: { id: d.id, status: d.status } }),
  });
}
