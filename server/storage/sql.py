"""SQL fragments that read the same in every backend's dialect."""

from __future__ import annotations

AVAILABLE = "NOT EXISTS (SELECT 1 FROM loans l WHERE l.book_id = b.id AND l.return_time IS NULL)"
"""True for a book (aliased ``b``) with no open loan."""

BOOK_COLUMNS = (
    f"b.id, b.title, b.author, b.isbn, b.published_year, b.create_time, b.update_time, {AVAILABLE}"
)
"""A book's columns in the order ``records.book_from_row`` reads them."""

LOAN_COLUMNS = "id, book_id, member_id, checkout_time, due_time, return_time"
"""A loan's columns in the order ``records.loan_from_row`` reads them."""

MEMBER_COLUMNS = "id, name, role, create_time"
"""A member's columns in the order ``records.member_from_row`` reads them."""
