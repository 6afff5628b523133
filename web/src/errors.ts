/** Turns Connect errors into sentences a visitor can act on. */

import { Code, ConnectError } from "@connectrpc/connect";

/** What the visitor was doing; some codes mean different things per action. */
export type Action = "browse" | "checkout" | "return" | "add" | "signin" | "whoami";

/** Messages that depend on the action, checked before the general ones. */
const BY_ACTION: Partial<Record<Action, Partial<Record<Code, string>>>> = {
  checkout: {
    [Code.FailedPrecondition]: "Someone else has this book.",
    [Code.NotFound]: "This book is no longer in the catalogue.",
  },
  return: {
    [Code.FailedPrecondition]: "This book is not on loan.",
    [Code.PermissionDenied]: "Only the member who borrowed this book, or a librarian, can return it.",
    [Code.NotFound]: "This book is no longer in the catalogue.",
  },
  add: {
    [Code.AlreadyExists]: "A book with this ISBN is already in the catalogue.",
    [Code.PermissionDenied]: "Only librarians can add books.",
  },
  signin: {
    [Code.Unauthenticated]: "That token was not accepted. Check that you pasted all of it.",
  },
};

const GENERAL: Partial<Record<Code, string>> = {
  [Code.Unauthenticated]: "Please sign in first.",
  [Code.PermissionDenied]: "You are not allowed to do that.",
  [Code.NotFound]: "That could not be found.",
  [Code.Unavailable]: "The library cannot be reached right now. Please try again in a moment.",
  [Code.DeadlineExceeded]: "The library took too long to answer. Please try again.",
  [Code.ResourceExhausted]: "The library is busy. Please try again in a moment.",
  [Code.Canceled]: "The request was cancelled.",
};

/** A plain-words explanation of `error` for someone who was doing `action`. */
export function friendlyMessage(error: unknown, action: Action): string {
  const err = ConnectError.from(error);
  if (err.code === Code.InvalidArgument) {
    // The server's validation messages name the field and the problem.
    return `Please check what you entered: ${err.rawMessage.replace(/\.$/, "")}.`;
  }
  if (err.code === Code.Unknown && err.cause instanceof TypeError) {
    // fetch() itself failed: offline, server down, or blocked by CORS.
    return GENERAL[Code.Unavailable]!;
  }
  return (
    BY_ACTION[action]?.[err.code] ??
    GENERAL[err.code] ??
    `Something went wrong (${Code[err.code]}). Please try again.`
  );
}
