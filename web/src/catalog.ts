/** The book list: ListBooks pages with a search query, kept current by book events. */

import type { LibraryClient } from "./api";
import { byId, el } from "./dom";
import { EventType, type Book, type BookEvent } from "./gen/library/v1/library_pb";
import { matchesQuery } from "./search";

const PAGE_SIZE = 10;

/** What a row's button does; the page decides who may do what. */
export interface RowActions {
  /** The label of the button for `book`, or null for no button. */
  actionFor(book: Book): "Check out" | "Return" | null;
  /** Run the action for `book`. */
  run(book: Book, action: "Check out" | "Return"): void;
}

/** One page of the catalogue on screen, with paging and search. */
export class Catalog {
  private query = "";
  private availableOnly = false;
  /** Tokens of the pages before the current one, for "Previous". */
  private previous: string[] = [];
  private current = "";
  private next = "";
  private total = 0;
  private readonly books = new Map<bigint, Book>();
  private readonly rows = new Map<bigint, HTMLLIElement>();
  private readonly list = byId<HTMLUListElement>("books");
  private loadSeq = 0;

  constructor(
    private readonly client: LibraryClient,
    private readonly actions: RowActions,
    private readonly onError: (error: unknown) => void,
  ) {
    byId("prev").addEventListener("click", () => void this.load(this.previous.pop() ?? "", false));
    byId("next").addEventListener("click", () => {
      this.previous.push(this.current);
      void this.load(this.next, false);
    });
  }

  /** Search from the first page; true once the server answered. */
  search(query: string, availableOnly: boolean): Promise<boolean> {
    this.query = query.trim();
    this.availableOnly = availableOnly;
    this.previous = [];
    return this.load("", true);
  }

  /** Fetch the page on screen again, e.g. when changes may have been missed. */
  reload(): Promise<boolean> {
    return this.load(this.current, true);
  }

  /** Apply one change from the stream to the page, if it concerns a book shown or due here. */
  apply(event: BookEvent): void {
    const book = event.book;
    if (!book) return;
    if (event.type === EventType.DELETED) {
      if (this.books.delete(book.id)) {
        this.rows.get(book.id)?.remove();
        this.rows.delete(book.id);
        this.total = Math.max(0, this.total - 1);
        this.renderSummary();
      }
      return;
    }
    this.offer(book);
  }

  /** Show `book` if it is on this page, or if it is new and paging would put it here. */
  offer(book: Book): void {
    if (this.books.has(book.id)) {
      this.put(book);
    } else if (this.belongsAtEnd(book)) {
      this.put(book);
      this.total += 1;
      this.renderSummary();
    }
  }

  /** Show `book`'s latest state (after an action or an event). */
  put(book: Book): void {
    this.books.set(book.id, book);
    const fresh = this.renderRow(book);
    const old = this.rows.get(book.id);
    this.rows.set(book.id, fresh);
    if (old) {
      // Keep keyboard focus on the row's button when the row is redrawn.
      const hadFocus = old.contains(document.activeElement);
      old.replaceWith(fresh);
      if (hadFocus) fresh.querySelector("button")?.focus();
    } else {
      this.list.append(fresh);
    }
  }

  /** Redraw every row, e.g. after sign-in changed which buttons apply. */
  redraw(): void {
    for (const book of this.books.values()) this.put(book);
  }

  /** A new book goes on screen only where paging would put it: the end of the last page. */
  private belongsAtEnd(book: Book): boolean {
    if (this.next || (this.availableOnly && !book.available)) return false;
    for (const id of this.books.keys()) if (id > book.id) return false;
    return matchesQuery(book, this.query);
  }

  private async load(pageToken: string, fromSearch: boolean): Promise<boolean> {
    const seq = ++this.loadSeq;
    byId("summary").textContent = "Loading books…";
    try {
      const res = await this.client.listBooks({
        query: this.query,
        availableOnly: this.availableOnly,
        pageSize: PAGE_SIZE,
        pageToken,
      });
      if (seq !== this.loadSeq) return true; // a newer search won
      this.current = pageToken;
      this.next = res.nextPageToken;
      this.total = res.totalSize;
      this.books.clear();
      this.rows.clear();
      this.list.replaceChildren();
      for (const book of res.books) this.put(book);
      this.renderSummary();
      if (!fromSearch) byId("catalogue").focus();
      return true;
    } catch (error) {
      if (seq !== this.loadSeq) return false;
      byId("summary").textContent = "The books could not be loaded.";
      this.onError(error);
      return false;
    }
  }

  private renderSummary(): void {
    const found = this.total === 1 ? "1 book" : `${this.total} books`;
    const matching = this.query ? ` matching “${this.query}”` : "";
    byId("summary").textContent = this.total ? `${found}${matching}` : `No books${matching}.`;
    const page = this.previous.length + 1;
    const pages = Math.max(1, Math.ceil(this.total / PAGE_SIZE));
    byId("page-label").textContent = `Page ${page} of ${pages}`;
    byId<HTMLButtonElement>("prev").disabled = this.previous.length === 0;
    byId<HTMLButtonElement>("next").disabled = !this.next;
  }

  private renderRow(book: Book): HTMLLIElement {
    const details = [book.author, book.publishedYear ? String(book.publishedYear) : "", `ISBN ${book.isbn}`]
      .filter(Boolean)
      .join(" · ");
    const badge = el("span", `badge ${book.available ? "in" : "out"}`, book.available ? "Available" : "On loan");
    const row = el(
      "li",
      "book",
      el("div", "details", el("h3", "title", book.title), el("p", "meta", details)),
      el("div", "state", badge),
    );
    row.dataset.bookId = String(book.id);
    row.dataset.available = String(book.available);
    const action = this.actions.actionFor(book);
    if (action) {
      const button = el("button", action === "Return" ? "secondary" : "", action);
      button.type = "button";
      button.setAttribute("aria-label", `${action} ${book.title}`);
      button.addEventListener("click", () => this.actions.run(book, action));
      row.querySelector(".state")!.append(button);
    }
    return row;
  }
}
