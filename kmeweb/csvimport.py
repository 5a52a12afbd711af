"""CSV uploads: read as a stream with the size and row limits enforced while reading, the
encoding recognised, the header checked, every problem reported by row (design.md 6.4).

Both imports (Admin › Users, a Self-Maintained profile's Import devices) read their file with
`read_rows`: it yields each data row as {column: cell} with its spreadsheet row number and
raises `ImportRejected` for a file that cannot be read at all (too large, too many rows, not
text, no usable header). Rules about the cells belong to the caller, which collects
`RowError`s and raises `ImportRejected(message, errors)` when any row is wrong.

Admins' files come from their own spreadsheets: the delimiter (comma, semicolon as European
Excel saves, or tab) is read from the header row, a header may spell a column as admins do
("Serial Number", "IMEI1": each import passes its `aliases`) and may hold columns the import
does not use but another download of the console writes (`ignored`), and a cell that a
download escaped against formulas (`'=...`, kmeweb.csvexport) reads back as it was.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import itertools
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from kmeweb.csvexport import FORMULA_STARTS
from kmeweb.errors import ValidationError

READ_CHUNK = 64 * 1024
DELIMITERS = (",", ";", "\t")  # the first wins a tie
_FORMULA = frozenset(FORMULA_STARTS)
VALUE_MAX = 100  # characters of a cell shown in a report
# A cell longer than this is no identifier, user or password; csv refuses it with a row number.
csv.field_size_limit(64 * 1024)


@dataclass(slots=True)
class RowError:
    """One problem of a CSV file: its row (1 is the header), column, the value, why."""

    row: int
    column: str
    value: str
    reason: str


class ImportRejected(ValidationError):
    """A CSV file refused: nothing was written; `errors` is the per-row report (may be empty
    for a file that could not be read at all). `status` is 422, or 413 for a file too large."""

    def __init__(self, message: str, errors: list[RowError] | None = None, status: int = 422):
        super().__init__(message, field="file", code="too_large" if status == 413 else None)
        self.errors = errors or []
        self.status = status


def shown(value: str) -> str:
    """A cell as a report shows it: at most VALUE_MAX characters."""
    return value if len(value) <= VALUE_MAX else value[: VALUE_MAX - 1] + "…"


def rejected(errors: list[RowError], what: str = "row") -> ImportRejected:
    """The ImportRejected for a file with bad rows (counted once per row)."""
    rows = len({e.row for e in errors})
    return ImportRejected(
        f"{rows:,} {what}{'s' if rows != 1 else ''} cannot be imported; nothing was imported. "
        "Correct the file and upload it again.",
        errors,
    )


def size_text(n: int) -> str:
    """A byte limit as an admin reads it: "20 MB", "64 KB"."""
    if n >= 1048576:
        return f"{n / 1048576:,.0f} MB"
    return f"{max(1, round(n / 1024)):,} KB"


def too_large_message(max_bytes: int) -> str:
    """What an upload past the size limit says, next to its file field."""
    return f"The file is larger than {size_text(max_bytes)}; split it into smaller files."


def detect_encoding(stream: IO[bytes], max_bytes: int) -> str:
    """Read the whole upload once, a chunk at a time, and name its encoding: "utf-8-sig"
    (UTF-8, with or without a BOM) or "cp1252" (Latin-1 as Windows spreadsheets save it).

    Stops reading as soon as the file passes `max_bytes` (413), refuses what is no text (an
    Excel workbook, UTF-16, any NUL byte), and rewinds the stream. Raises ImportRejected.
    """
    utf8 = codecs.getincrementaldecoder("utf-8")()
    is_utf8 = True
    total = 0
    head = b""
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise ImportRejected(too_large_message(max_bytes), status=413)
        if len(head) < 4:
            head += chunk[: 4 - len(head)]
        if head.startswith(b"PK\x03\x04"):
            raise ImportRejected(
                "This is an Excel workbook, not CSV: in Excel choose File › Save As › "
                "CSV UTF-8 and upload that file."
            )
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise ImportRejected("The file is UTF-16 text; save it as CSV UTF-8.")
        if b"\x00" in chunk:
            raise ImportRejected("The file is not CSV text (it holds binary data).")
        if is_utf8:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError:
                is_utf8 = False
    if is_utf8:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            is_utf8 = False
    stream.seek(0)
    if total == 0:
        raise ImportRejected("The file is empty; its first row names the columns.")
    return "utf-8-sig" if is_utf8 else "cp1252"


_NOT_WORD = re.compile(r"[\W_]+")


def column_key(cell: str) -> str:
    """A header cell as a column name: lower case, each run of anything but letters and digits
    one underscore ("Serial Number" -> serial_number, "E-mail" -> e_mail, "S/N" -> s_n)."""
    return _NOT_WORD.sub("_", cell.lstrip("\ufeff").lower()).strip("_")


def detect_delimiter(header_line: str) -> str:
    """The delimiter of a file, read from its header row: of comma, semicolon and tab, the one
    the row holds most often outside quotes (a comma when it holds none)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else ","


@dataclass(slots=True)
class Header:
    """The columns a file's first row names: {column: index}, and how many cells it has."""

    index: dict[str, int]
    width: int


def read_header(
    cells: list[str] | None,
    columns: Sequence[str],
    required_any: Sequence[str],
    looks_like_data: Callable[[str], bool] = lambda cell: False,
    aliases: Mapping[str, str] | None = None,
    ignored: Collection[str] = (),
) -> Header:
    """Check a file's first row: known column names (any case and punctuation, or one of
    their `aliases`), none unknown (misspelled: with the near match named), none twice, at
    least one of `required_any`; `ignored` columns are accepted and left out. Raises
    ImportRejected with every header problem as row 1 errors."""
    if cells is None or not any(c.strip() for c in cells):
        raise ImportRejected("The first row is empty; it must name the columns.")
    aliases = aliases or {}
    keys = [column_key(c) for c in cells]
    names = [aliases.get(k, k) for k in keys]
    hint = ", ".join(columns)
    known = any(n in columns or n in ignored for n in names)
    if not known and any(looks_like_data(c.strip()) for c in cells):
        raise ImportRejected(
            f"The first row holds data, not column names: add a header row ({hint}) above it "
            "(Download template shows one).",
            [RowError(1, "", shown(",".join(cells)), f"Expected the column names: {hint}.")],
        )
    errors: list[RowError] = []
    index: dict[str, int] = {}
    spellings = [*columns, *aliases]
    for i, (cell, name) in enumerate(zip(cells, names, strict=True)):
        if not name:
            errors.append(RowError(1, f"column {i + 1}", "", f"A column without a name; {hint}."))
        elif name in ignored:
            continue
        elif name not in columns:
            near = difflib.get_close_matches(name, spellings, n=1, cutoff=0.6)
            reason = (
                f"Unknown column: did you mean “{aliases.get(near[0], near[0])}”?"
                if near
                else f"Unknown column; the columns are {hint}."
            )
            errors.append(RowError(1, shown(cell.strip()), shown(cell), reason))
        elif name in index:
            errors.append(RowError(1, name, shown(cell), f"Also column {index[name] + 1}."))
        else:
            index[name] = i
    if not errors and not any(c in index for c in required_any):
        wanted = " or ".join(f"“{c}”" for c in required_any)
        errors.append(RowError(1, "", shown(",".join(cells)), f"The header needs {wanted}."))
    if errors:
        raise ImportRejected(
            "The first row must name the columns: " + hint + ". Nothing was imported.", errors
        )
    return Header(index, len(cells))


@dataclass(slots=True)
class Row:
    """A data row: its spreadsheet row number, its cells by column, and cells past the
    header's last column that are not empty."""

    number: int
    cells: dict[str, str]
    extra: list[str]
    size: int = 0  # how many cells the row has
    width: int = 0  # how many columns the header has

    def ragged_error(self) -> RowError | None:
        """The problem of a row with more cells than the header has columns, or None."""
        if not self.extra:
            return None
        return RowError(
            self.number,
            "",
            shown(",".join(self.extra)),
            f"This row has {self.size} cells but the header has {self.width} "
            + ("column." if self.width == 1 else "columns."),
        )


def _unescaped(cell: str) -> str:
    """A cell as it was before a download escaped it against formulas ('=1 -> =1)."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in _FORMULA else cell


def _row(number: int, cells: list[str], header: Header) -> Row:
    """A data row as read_rows yields it: its cells by column (a short row padded with empty
    cells), the non-empty cells past the header's last column, formula escapes undone."""
    n = len(cells)
    width = header.width
    if n == width:
        values = {name: cells[i] for name, i in header.index.items()}
        extra = []
    else:
        values = {name: cells[i] if i < n else "" for name, i in header.index.items()}
        extra = [c for c in cells[width:] if c.strip()]
    if any("'" in c for c in cells):
        values = {name: _unescaped(v) for name, v in values.items()}
    return Row(number, values, extra, n, width)


@contextmanager
def _reading(
    stream: IO[bytes],
    columns: Sequence[str],
    required_any: Sequence[str],
    max_bytes: int,
    max_rows: int,
    looks_like_data: Callable[[str], bool],
    aliases: Mapping[str, str] | None,
    ignored: Collection[str],
) -> Iterator[tuple[Header, Iterator[tuple[int, list[str]]]]]:
    """The header of an upload and its data rows as (row number, cells), for read_rows and
    read_table: the size and row limits, blank lines, the header and csv's errors."""
    encoding = detect_encoding(stream, max_bytes)
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    try:
        first = text.readline()
        reader = csv.reader(itertools.chain([first], text), delimiter=detect_delimiter(first))

        def data_rows() -> Iterator[tuple[int, list[str]]]:
            count = 0
            for number, cells in enumerate(reader, start=2):
                if not "".join(cells).strip():
                    continue
                count += 1
                if count > max_rows:
                    raise ImportRejected(
                        f"The file has more than {max_rows:,} rows; split it into smaller "
                        "files. Nothing was imported."
                    )
                yield number, cells
            if count == 0:
                raise ImportRejected("The file has no rows below its header row.")

        try:
            header = read_header(
                next(reader, None), columns, required_any, looks_like_data, aliases, ignored
            )
            yield header, data_rows()
        except csv.Error as exc:
            raise ImportRejected(
                f"Row {reader.line_num}: the file is not valid CSV ({exc})."
            ) from None
    finally:
        text.detach()


def read_rows(
    stream: IO[bytes],
    columns: Sequence[str],
    required_any: Sequence[str],
    max_bytes: int,
    max_rows: int,
    looks_like_data: Callable[[str], bool] = lambda cell: False,
    aliases: Mapping[str, str] | None = None,
    ignored: Collection[str] = (),
) -> Iterator[Row]:
    """Every data row of an uploaded CSV file, read as a stream (blank lines skipped; row
    numbers are the spreadsheet's, the header being row 1; the delimiter read from the header).

    The size limit is enforced while reading (detect_encoding) and the row limit as rows
    arrive, so an oversized file is refused without being held in memory. Raises
    ImportRejected (file-level problems) before or while yielding.
    """
    with _reading(
        stream, columns, required_any, max_bytes, max_rows, looks_like_data, aliases, ignored
    ) as (header, rows):
        for number, cells in rows:
            yield _row(number, cells, header)


@dataclass(slots=True)
class Table:
    """A whole upload read at once: its header, and each data row's number and cells as read
    (`row(i)` is the i-th as read_rows yields it)."""

    header: Header
    numbers: list[int]
    cells: list[list[str]]

    def __len__(self) -> int:
        return len(self.numbers)

    def row(self, i: int) -> Row:
        return _row(self.numbers[i], self.cells[i], self.header)

    def column(self, name: str) -> list[str] | None:
        """Every row's cell of column `name` as `row(i)` has it (None when the header has no
        such column), for rules checked over a whole column at once."""
        i = self.header.index.get(name)
        if i is None:
            return None
        cells = [c[i] if i < len(c) else "" for c in self.cells]
        if "'" in "".join(cells):
            cells = [_unescaped(c) for c in cells]
        return cells


def read_table(
    stream: IO[bytes],
    columns: Sequence[str],
    required_any: Sequence[str],
    max_bytes: int,
    max_rows: int,
    looks_like_data: Callable[[str], bool] = lambda cell: False,
    aliases: Mapping[str, str] | None = None,
    ignored: Collection[str] = (),
) -> Table:
    """read_rows' rows all at once, as the cells csv read (what read_rows checks is checked
    here: the limits, the header, blank lines). Raises ImportRejected."""
    numbers: list[int] = []
    cells: list[list[str]] = []
    with _reading(
        stream, columns, required_any, max_bytes, max_rows, looks_like_data, aliases, ignored
    ) as (header, rows):
        for number, row in rows:
            numbers.append(number)
            cells.append(row)
    return Table(header, numbers, cells)
