-- Timestamps are microseconds since the Unix epoch, in UTC.
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL
);

CREATE TABLE books (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  title TEXT NOT NULL,
  author TEXT NOT NULL,
  isbn TEXT NOT NULL UNIQUE,
  published_year INTEGER NOT NULL,
  -- Case-folded title, author and ISBN, for case-insensitive search.
  search_text TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  update_time INTEGER NOT NULL
);

CREATE TABLE loans (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  book_id INTEGER NOT NULL,
  member_id TEXT NOT NULL,
  checkout_time INTEGER NOT NULL,
  due_time INTEGER NOT NULL,
  return_time INTEGER
);

-- At most one open loan per book: this index is what makes checkout exactly-once.
CREATE UNIQUE INDEX loans_open_by_book ON loans (book_id) WHERE return_time IS NULL;

CREATE INDEX loans_by_member ON loans (member_id, id);

CREATE TABLE members (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role INTEGER NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  create_time INTEGER NOT NULL
);

-- The change log. AUTOINCREMENT never reuses a revision, even after pruning.
CREATE TABLE events (
  revision INTEGER PRIMARY KEY AUTOINCREMENT,
  type INTEGER NOT NULL,
  book TEXT NOT NULL,
  create_time INTEGER NOT NULL
);
