// Small DOM helpers. Text from the API is always set as text, never parsed as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

export function setText(id, text) {
  $(id).textContent = text ?? "–";
}

// A table from column specs: {title, value(row), num?}; rowProps(row) gives the <tr>'s attributes.
export function fillTable(table, columns, rows, { empty = "Nothing yet.", rowProps = () => ({}) } = {}) {
  table.replaceChildren();
  if (!rows.length) {
    table.append(el("tr", {}, el("td", { class: "empty" }, empty)));
    return;
  }
  table.append(el("tr", {}, ...columns.map((c) => el("th", c.num ? { class: "num" } : {}, c.title))));
  for (const row of rows) {
    table.append(el("tr", rowProps(row), ...columns.map((c) => {
      const value = c.value(row);
      return value instanceof Node ? el("td", {}, value) : el("td", c.num ? { class: "num" } : {}, value);
    })));
  }
}

// A date and time from the API (ISO 8601, UTC) in the reader's locale; "–" for none.
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

export function showNotice(message) {
  const box = $("notice");
  box.textContent = message;
  box.hidden = !message;
}

// An error from a call, as one line for the error box.
export function describe(error) {
  return error.status ? `${error.message} (HTTP ${error.status})` : `The API could not be reached: ${error.message}`;
}
