-- Timestamps are microseconds since the Unix epoch, in UTC, as in the SQLite schema.
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value BYTEA NOT NULL
);

CREATE TABLE books (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  title TEXT NOT NULL,
  author TEXT NOT NULL,
  isbn TEXT NOT NULL UNIQUE,
  published_year INTEGER NOT NULL,
  -- Case-folded title, author and ISBN, for case-insensitive search.
  search_text TEXT NOT NULL,
  create_time BIGINT NOT NULL,
  update_time BIGINT NOT NULL
);

CREATE TABLE loans (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  book_id BIGINT NOT NULL,
  member_id TEXT NOT NULL,
  checkout_time BIGINT NOT NULL,
  due_time BIGINT NOT NULL,
  return_time BIGINT
);

-- At most one open loan per book: this index is what makes checkout exactly-once.
CREATE UNIQUE INDEX loans_open_by_book ON loans (book_id) WHERE return_time IS NULL;

CREATE INDEX loans_by_member ON loans (member_id, id);

CREATE TABLE members (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role INTEGER NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  create_time BIGINT NOT NULL
);

-- The change log. Revisions come from event_head, not from a sequence, so
-- they are gapless and in commit order (see server/storage/postgres.py).
CREATE TABLE events (
  revision BIGINT PRIMARY KEY,
  type INTEGER NOT NULL,
  book TEXT NOT NULL,
  create_time BIGINT NOT NULL
);

-- Exactly one row: the last revision handed out, and the last one pruned.
CREATE TABLE event_head (
  only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
  revision BIGINT NOT NULL,
  pruned_through BIGINT NOT NULL
);

INSERT INTO event_head (revision, pruned_through) VALUES (0, 0);
