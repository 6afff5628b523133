"""Demo data for ``serve --demo``: real books, and a librarian and a member to try them with."""

from __future__ import annotations

from contextlib import suppress

from server.domain.auth import new_token
from server.domain.errors import AlreadyExists
from server.domain.library import Library
from server.domain.models import Role

DEMO_LIBRARIAN = "Demo Librarian"
DEMO_MEMBER = "Demo Member"

# (title, author, ISBN, year of publication)
BOOKS: list[tuple[str, str, str, int]] = [
    ("The Pragmatic Programmer", "Andrew Hunt, David Thomas", "978-0201616224", 1999),
    (
        "Structure and Interpretation of Computer Programs",
        "Harold Abelson, Gerald Jay Sussman",
        "978-0262510875",
        1996,
    ),
    (
        "The C Programming Language",
        "Brian W. Kernighan, Dennis M. Ritchie",
        "978-0131103627",
        1988,
    ),
    (
        "Design Patterns",
        "Erich Gamma, Richard Helm, Ralph Johnson, John Vlissides",
        "978-0201633610",
        1994,
    ),
    ("Refactoring", "Martin Fowler", "978-0134757599", 2018),
    ("Clean Code", "Robert C. Martin", "978-0132350884", 2008),
    ("Code Complete", "Steve McConnell", "978-0735619678", 2004),
    ("The Mythical Man-Month", "Frederick P. Brooks Jr.", "978-0201835953", 1995),
    (
        "Introduction to Algorithms",
        "Thomas H. Cormen, Charles E. Leiserson, Ronald L. Rivest, Clifford Stein",
        "978-0262046305",
        2022,
    ),
    (
        "Designing Data-Intensive Applications",
        "Martin Kleppmann",
        "978-1449373320",
        2017,
    ),
    ("Fluent Python", "Luciano Ramalho", "978-1492056355", 2022),
    ("Python Crash Course", "Eric Matthes", "978-1718502703", 2023),
    ("Effective Java", "Joshua Bloch", "978-0134685991", 2018),
    (
        "The Art of Computer Programming, Vol. 1",
        "Donald E. Knuth",
        "978-0201896831",
        1997,
    ),
    ("Gödel, Escher, Bach", "Douglas R. Hofstadter", "978-0465026562", 1999),
    (
        "Site Reliability Engineering",
        "Betsy Beyer, Chris Jones, Jennifer Petoff, Niall Richard Murphy",
        "978-1491929124",
        2016,
    ),
    (
        "Working Effectively with Legacy Code",
        "Michael Feathers",
        "978-0131177055",
        2004,
    ),
    ("Domain-Driven Design", "Eric Evans", "978-0321125217", 2003),
    ("Test Driven Development: By Example", "Kent Beck", "978-0321146533", 2002),
    (
        "Patterns of Enterprise Application Architecture",
        "Martin Fowler",
        "978-0321127426",
        2002,
    ),
    ("Pride and Prejudice", "Jane Austen", "978-0141439518", 1813),
    ("Nineteen Eighty-Four", "George Orwell", "978-0452284234", 1949),
    ("To Kill a Mockingbird", "Harper Lee", "978-0061120084", 1960),
    ("The Great Gatsby", "F. Scott Fitzgerald", "978-0743273565", 1925),
    ("Moby-Dick", "Herman Melville", "978-0142437247", 1851),
    ("One Hundred Years of Solitude", "Gabriel García Márquez", "978-0060883287", 1967),
    ("The Hobbit", "J. R. R. Tolkien", "978-0547928227", 1937),
    ("Dune", "Frank Herbert", "978-0441172719", 1965),
    ("Brave New World", "Aldous Huxley", "978-0060850524", 1932),
    ("Crime and Punishment", "Fyodor Dostoevsky", "978-0143058144", 1866),
    ("The Left Hand of Darkness", "Ursula K. Le Guin", "978-0441478125", 1969),
    ("Frankenstein", "Mary Shelley", "978-0486282114", 1818),
    ("Jane Eyre", "Charlotte Brontë", "978-0141441146", 1847),
    ("The Catcher in the Rye", "J. D. Salinger", "978-0316769488", 1951),
    ("A Brief History of Time", "Stephen Hawking", "978-0553380163", 1988),
    ("Sapiens", "Yuval Noah Harari", "978-0062316097", 2015),
]


async def seed(library: Library) -> tuple[str, str]:
    """Add the demo books once, and give the demo librarian and member fresh tokens.

    Returns the (librarian, member) tokens; they are valid until the next seeding.
    """
    for title, author, isbn, year in BOOKS:
        with suppress(AlreadyExists):
            await library.create_book(title, author, isbn, year)
    librarian_token, member_token = new_token(), new_token()
    await library.put_member_token(DEMO_LIBRARIAN, Role.LIBRARIAN, librarian_token)
    await library.put_member_token(DEMO_MEMBER, Role.MEMBER, member_token)
    return librarian_token, member_token
