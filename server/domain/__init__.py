"""The rules of the library, free of RPC and SQL: books, loans, members, events."""
