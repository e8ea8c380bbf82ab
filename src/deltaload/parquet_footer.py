"""The per-column ``is_max_value_exact`` flags of a Parquet footer, which pyarrow does not expose.

Parquet 2.10 added ``Statistics.is_max_value_exact`` (field 7): a writer that truncates a
string maximum (parquet-java, arrow-rs) stores a rounded-up bound and sets it false.
pyarrow 26 reads the footer but offers no access to the flag, so this module walks the
footer's Thrift compact encoding for it alone (FileMetaData.row_groups[].columns[]
.meta_data.statistics, field numbers from parquet.thrift in apache/parquet-format). The
``thrift`` package would need code generated from that IDL for the same few fields.
"""

from __future__ import annotations

from typing import Any

from deltaload.errors import FooterError

# Thrift compact protocol type ids.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = range(9)
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12

_ROW_GROUPS, _COLUMNS, _META_DATA, _STATISTICS, _IS_MAX_EXACT = 4, 1, 3, 12, 7


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise FooterError("footer ends inside a value")
        value = self.data[self.at]
        self.at += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int, path: tuple[int, ...]) -> Any:
        """Decode one value; structs only along ``path`` (others are skipped: None)."""
        if kind in (_TRUE, _FALSE):  # a bool list element: one byte, 1 is true
            return self.byte() == 1
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind in (_DOUBLE, _BINARY):
            size = 8 if kind == _DOUBLE else self.varint()
            self.at += size
            if self.at > len(self.data):
                raise FooterError("footer ends inside a value")
            return None
        if kind in (_LIST, _SET):
            header = self.byte()
            size = header >> 4 if header >> 4 != 15 else self.varint()
            return [self.value(header & 0x0F, path) for _ in range(size)]
        if kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.value(types >> 4, ())
                    self.value(types & 0x0F, ())
            return None
        if kind == _STRUCT:
            return self.struct(path)
        raise FooterError(f"unknown Thrift compact type {kind}")

    def struct(self, path: tuple[int, ...]) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        last = 0
        while (header := self.byte()) != _STOP:
            delta, kind = header >> 4, header & 0x0F
            last = last + delta if delta else self.zigzag()
            if kind in (_TRUE, _FALSE):
                fields[last] = kind == _TRUE
                continue
            wanted = bool(path) and path[0] == last
            value = self.value(kind, path[1:] if wanted else ())
            if wanted or kind not in (_STRUCT, _LIST, _SET):
                fields[last] = value
        return fields


def max_exact_flags(footer: bytes) -> list[list[bool | None]]:
    """Per row group, per column chunk: its ``is_max_value_exact`` (None when not written)."""
    root = _Reader(footer).struct((_ROW_GROUPS, _COLUMNS, _META_DATA, _STATISTICS))
    flags: list[list[bool | None]] = []
    for group in root.get(_ROW_GROUPS) or []:
        row: list[bool | None] = []
        for chunk in (group or {}).get(_COLUMNS) or []:
            statistics = ((chunk or {}).get(_META_DATA) or {}).get(_STATISTICS) or {}
            exact = statistics.get(_IS_MAX_EXACT)
            row.append(exact if isinstance(exact, bool) else None)
        flags.append(row)
    return flags
