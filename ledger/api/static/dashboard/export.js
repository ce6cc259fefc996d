// The CSV export (GET .../export.csv): fetched with the key in a header, then saved from memory,
// so the key never appears in a link.

import { accountPath, request } from "./api.js";
import { $, el } from "./dom.js";

export function wireExport(onError) {
  $("export").addEventListener("click", async () => {
    try {
      const response = await request(accountPath("/export.csv"), { raw: true });
      const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || "export.csv";
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      onError(error);
    }
  });
}
