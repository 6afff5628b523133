/** Tiny DOM helpers, so the page needs no UI framework. */

/** The element with `id`; the page's markup guarantees it exists. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

/** A new element with a class and text or children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  ...children: (string | Node)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

/** Shows one message in the error or the info line, clearing the other. */
export function notify(kind: "error" | "info", text: string): void {
  const error = byId("error");
  const info = byId("info");
  error.textContent = kind === "error" ? text : "";
  info.textContent = kind === "info" ? text : "";
}

/** Clears the error and the info line. */
export function clearNotices(): void {
  byId("error").textContent = "";
  byId("info").textContent = "";
}
