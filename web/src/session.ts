/** Who is signed in (WhoAmI), their open loans, and the sign-in / sign-out forms. */

import { tokenStore, type LibraryClient } from "./api";
import { byId } from "./dom";
import { Role, type Member } from "./gen/library/v1/library_pb";

/** The signed-in member, if any, and the books they may return. */
export class Session {
  member: Member | null = null;
  /** Ids of the books this member has borrowed and not returned. */
  readonly loans = new Set<bigint>();

  constructor(private readonly client: LibraryClient) {}

  get isLibrarian(): boolean {
    return this.member?.role === Role.LIBRARIAN;
  }

  /** May the signed-in member return `bookId`? Librarians may return any loan. */
  mayReturn(bookId: bigint): boolean {
    return this.isLibrarian || this.loans.has(bookId);
  }

  /** Check `token` with WhoAmI; keep it only if the server knows it. Throws the Connect error otherwise. */
  async signIn(token: string): Promise<void> {
    const previous = tokenStore.get();
    tokenStore.set(token);
    try {
      await this.refresh();
    } catch (error) {
      if (previous) tokenStore.set(previous);
      else tokenStore.clear();
      throw error;
    }
  }

  /** Load the member and their open loans for the stored token (nothing when there is none). */
  async refresh(): Promise<void> {
    this.member = null;
    this.loans.clear();
    if (tokenStore.get()) {
      const { member } = await this.client.whoAmI({});
      const loans = new Set<bigint>();
      if (member && member.role !== Role.LIBRARIAN) {
        let pageToken = "";
        do {
          const page = await this.client.listLoans({ activeOnly: true, pageSize: 1000, pageToken });
          for (const loan of page.loans) loans.add(loan.bookId);
          pageToken = page.nextPageToken;
        } while (pageToken);
      }
      this.member = member ?? null;
      for (const id of loans) this.loans.add(id);
    }
    this.render();
  }

  /** Forget the token and the member. */
  signOut(): void {
    tokenStore.clear();
    this.member = null;
    this.loans.clear();
    this.render();
  }

  private render(): void {
    const member = this.member;
    byId("signin").hidden = member !== null;
    byId("account").hidden = member === null;
    byId("add").hidden = !this.isLibrarian;
    byId("who").textContent = member?.name ?? "";
    byId("role").textContent = member ? (this.isLibrarian ? "librarian" : "member") : "";
  }
}
