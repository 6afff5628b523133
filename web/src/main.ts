/** The Library page: wires the catalogue, the live stream, the session and the forms together. */

import "./style.css";
import { Code, ConnectError } from "@connectrpc/connect";
import { apiBaseUrl, createLibraryClient, tokenStore } from "./api";
import { Catalog } from "./catalog";
import { byId, clearNotices, notify } from "./dom";
import { friendlyMessage, type Action } from "./errors";
import type { Book } from "./gen/library/v1/library_pb";
import { BookWatch, type LiveState } from "./live";
import { Session } from "./session";

const client = createLibraryClient(apiBaseUrl(), () => tokenStore.get());
const session = new Session(client);
const fail = (action: Action) => (error: unknown) => notify("error", friendlyMessage(error, action));

const catalog = new Catalog(
  client,
  {
    actionFor: (book) => (book.available ? "Check out" : session.member && session.mayReturn(book.id) ? "Return" : null),
    run: (book, action) => void (action === "Check out" ? checkout(book) : giveBack(book)),
  },
  fail("browse"),
);

async function checkout(book: Book): Promise<void> {
  if (!session.member) {
    notify("error", "Please sign in to check out books.");
    byId("token").focus();
    return;
  }
  try {
    const res = await client.checkoutBook({ id: book.id });
    session.loans.add(book.id);
    if (res.book) catalog.put(res.book);
    notify("info", `You have checked out “${book.title}”.`);
  } catch (error) {
    fail("checkout")(error);
    await refreshBook(book);
  }
}

async function giveBack(book: Book): Promise<void> {
  try {
    const res = await client.returnBook({ id: book.id });
    session.loans.delete(book.id);
    if (res.book) catalog.put(res.book);
    notify("info", `“${book.title}” is returned.`);
  } catch (error) {
    fail("return")(error);
    await refreshBook(book);
  }
}

/** After a failed action the page's copy of the book was stale: fetch the truth. */
async function refreshBook(book: Book): Promise<void> {
  try {
    const res = await client.getBook({ id: book.id });
    if (res.book) catalog.put(res.book);
  } catch {
    // The error shown for the action already tells the visitor what happened.
  }
}

function showLive(state: LiveState, revision: bigint): void {
  const live = byId("live");
  live.dataset.state = state;
  live.dataset.revision = String(revision);
  byId("live-text").textContent =
    state === "live" ? "Live" : state === "connecting" ? "Connecting…" : "Reconnecting…";
}

byId<HTMLFormElement>("search").addEventListener("submit", (e) => {
  e.preventDefault();
  // The last action's message is about the list being replaced now.
  clearNotices();
  void catalog.search(byId<HTMLInputElement>("query").value, byId<HTMLInputElement>("available-only").checked);
});
byId("available-only").addEventListener("change", () => byId<HTMLFormElement>("search").requestSubmit());

byId<HTMLFormElement>("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = byId<HTMLInputElement>("token");
  try {
    await session.signIn(input.value.trim());
    input.value = "";
    notify("info", `Welcome, ${session.member?.name}.`);
    catalog.redraw();
    byId("signout").focus();
  } catch (error) {
    fail("signin")(error);
  }
});

byId("signout").addEventListener("click", () => {
  session.signOut();
  catalog.redraw();
  notify("info", "You are signed out.");
  byId("token").focus();
});

byId<HTMLFormElement>("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget as HTMLFormElement;
  const field = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value.trim();
  try {
    const res = await client.createBook({
      title: field("title"),
      author: field("author"),
      isbn: field("isbn"),
      publishedYear: Number(field("year")) || 0,
    });
    form.reset();
    // The count and, where the new book falls on this page, the list change:
    // fetch the page again rather than guess where paging puts the book.
    await catalog.reload();
    notify("info", `Added “${res.book?.title}”.`);
  } catch (error) {
    fail("add")(error);
  }
});

// The first list comes from ListBooks right away; the stream only keeps it current.
// That first ListBooks also tells the stream's first attempt that the server is up.
const firstList = catalog.search("", false);
new BookWatch(
  client,
  {
    onEvent: (event) => catalog.apply(event),
    onState: showLive,
    onRestart: () => void catalog.reload(),
  },
  firstList,
).start();
if (tokenStore.get()) {
  session.refresh().then(
    () => catalog.redraw(),
    (error) => {
      if (ConnectError.from(error).code === Code.Unauthenticated) {
        session.signOut();
        notify("error", "Your saved sign-in no longer works. Please sign in again.");
      } else {
        fail("whoami")(error);
      }
    },
  );
}
