/** The Library client: one Connect transport, the signed-in token, and the API's base URL. */

import { getOption, type DescMethod } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { Access, access } from "./gen/library/v1/access_pb";
import { LibraryService } from "./gen/library/v1/library_pb";

export type LibraryClient = Client<typeof LibraryService>;

const TOKEN_KEY = "library.token";

/** The token pasted at sign-in, kept in localStorage so a reload stays signed in. */
export const tokenStore = {
  get(): string {
    return localStorage.getItem(TOKEN_KEY) ?? "";
  },
  set(token: string): void {
    localStorage.setItem(TOKEN_KEY, token);
  },
  clear(): void {
    localStorage.removeItem(TOKEN_KEY);
  },
};

/**
 * Where the API lives: the page's own origin, unless the page was deployed
 * elsewhere (a CDN, another host) with `<meta name="library-api" content="https://...">`.
 */
export function apiBaseUrl(doc: Document = document): string {
  const configured = doc.querySelector<HTMLMetaElement>('meta[name="library-api"]')?.content.trim();
  return configured || location.origin;
}

/**
 * Whether anyone may make this call: the proto's `(library.v1.access)` option,
 * the same one the server enforces. Such calls go without a token: shared HTTP
 * caches keep GET responses only for requests without `Authorization`, and a
 * cross-origin read without it needs no CORS preflight. A method without the
 * option reads as ACCESS_UNSPECIFIED and so keeps the token.
 */
function isPublic(method: DescMethod): boolean {
  return getOption(method, access) === Access.ANYONE;
}

/** Sends `Authorization: Bearer <token>` on the calls that need a signed-in caller. */
function bearer(getToken: () => string): Interceptor {
  return (next) => (req) => {
    const token = getToken();
    if (token && !isPublic(req.method)) {
      req.header.set("authorization", `Bearer ${token}`);
    }
    return next(req);
  };
}

/** A client for `baseUrl` that authenticates with whatever `getToken` returns at call time. */
export function createLibraryClient(baseUrl: string, getToken: () => string): LibraryClient {
  const transport = createConnectTransport({
    baseUrl,
    // JSON, not binary: see "Wire format" in the README. Small messages, readable
    // in the browser's network panel, and GET URLs an HTTP cache can key on.
    useBinaryFormat: false,
    // ListBooks, GetBook, ListLoans and WhoAmI are NO_SIDE_EFFECTS: plain GETs.
    useHttpGet: true,
    interceptors: [bearer(getToken)],
    // The server lets caches keep public reads for a second (see the README);
    // the page itself always asks again, since its stream has moved on since.
    fetch: (input, init) => globalThis.fetch(input, { ...init, cache: "no-cache" }),
  });
  return createClient(LibraryService, transport);
}
