/**
 * Whether a book matches a search query: the server's rule (server/domain/search.py), mirrored
 * so that a live change shows on the page exactly when a fresh search would list it.
 */

import type { Book } from "./gen/library/v1/library_pb";

const ISBN_FRAGMENT = /^[0-9X]+$/;
const CONTROL = /\p{Cc}/u;

/**
 * Python's str.casefold, which JavaScript lacks: upper- then lower-casing, plus the two
 * letters that leaves apart (checked against casefold for every code point below U+30000).
 */
function fold(text: string): string {
  return text.toUpperCase().toLowerCase().replace(/ς/g, "σ").replace(/ß/g, "ss");
}

/** Title, author or ISBN contain `query` in any case, or the ISBN contains it without hyphens and spaces. */
export function matchesQuery(book: Book, query: string): boolean {
  const q = query.trim();
  if (!q) return true;
  if (CONTROL.test(q)) return false;
  const text = fold(q);
  if ([book.title, book.author, book.isbn].some((field) => fold(field).includes(text))) return true;
  const compact = q.replace(/[- ]/g, "").toUpperCase();
  return ISBN_FRAGMENT.test(compact) && book.isbn.includes(compact);
}
