"""The spool file on its own: append, count, drain in order, keep what was not delivered."""

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from aegis.core.errors import DatabaseUnavailable, StoreError
from aegis.storage.spool import BadRecord, SetAside, Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "home" / "spool.jsonl")


def test_a_missing_file_is_an_empty_spool_and_is_not_created(spool: Spool) -> None:
    assert spool.pending() == 0
    assert spool.drain(lambda record: None) == 0
    assert not spool.path.exists()


def test_append_creates_the_folder_and_writes_one_json_line_per_record(spool: Spool) -> None:
    spool.append({"kind": "event", "n": 1})
    spool.append({"kind": "state", "n": 2, "when": Path("/x")})  # non-JSON values as text
    lines = spool.path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"kind": "event", "n": 1}, {"kind": "state", "n": 2, "when": "/x"}]
    assert spool.pending() == 2


def test_drain_delivers_in_order_and_empties_the_file(spool: Spool) -> None:
    for n in range(5):
        spool.append({"n": n})
    seen: list[int] = []
    assert spool.drain(lambda record: seen.append(record["n"])) == 5
    assert seen == [0, 1, 2, 3, 4]
    assert spool.pending() == 0
    assert spool.path.read_text() == ""


def test_drain_stops_at_the_first_unavailable_and_keeps_the_rest_in_order(spool: Spool) -> None:
    for n in range(5):
        spool.append({"n": n})
    seen: list[int] = []

    def deliver(record: dict[str, Any]) -> None:
        if record["n"] == 2:
            raise DatabaseUnavailable("connection refused")
        seen.append(record["n"])

    assert spool.drain(deliver) == 2
    assert seen == [0, 1]
    assert spool.pending() == 3
    spool.append({"n": 5})  # written while the database is still down
    assert spool.drain(lambda record: seen.append(record["n"])) == 4
    assert seen == [0, 1, 2, 3, 4, 5]


def test_any_other_error_propagates_and_loses_nothing(spool: Spool) -> None:
    spool.append({"n": 0})
    spool.append({"n": 1})

    def deliver(record: dict[str, Any]) -> None:
        raise StoreError("constraint violated")

    with pytest.raises(StoreError):
        spool.drain(deliver)
    assert spool.pending() == 2


def test_a_torn_line_from_a_crash_is_set_aside_and_the_rest_delivered(spool: Spool) -> None:
    spool.append({"n": 0})
    with open(spool.path, "a", encoding="utf-8") as handle:
        handle.write('{"n": 1, "summ')  # the process died mid-append
    spool.append({"n": 2})
    seen: list[int] = []
    notes: list[SetAside] = []
    assert spool.drain(lambda record: seen.append(record["n"]), notes.append) == 3
    assert seen == [0, 2]
    assert spool.pending() == 0
    assert spool.set_aside_path.read_bytes() == b'{"n": 1, "summ\n'
    assert [n.line for n in notes] == [2]
    assert notes[0].reason.startswith("not JSON (")


def test_lines_that_are_not_records_are_set_aside_byte_for_byte(spool: Spool) -> None:
    spool.append({"n": 0})
    with open(spool.path, "ab") as handle:
        handle.write(b'{"n": 1, "summary": "caf\xe9 \xff\xfe"}\n[1, 2]\n')
    spool.append({"n": 3})
    spool.append({"n": 4, "refused": True})
    seen: list[int] = []
    notes: list[SetAside] = []

    def deliver(record: dict[str, Any]) -> None:
        if record.get("refused"):
            raise BadRecord("a record of kind None that cannot be replayed")
        seen.append(record["n"])

    assert spool.drain(deliver, notes.append) == 5
    assert seen == [0, 3]
    assert [(n.line, n.reason) for n in notes] == [
        (2, "not UTF-8 (byte 0xe9 at position 24)"), (3, "not a JSON object but list"),
        (5, "a record of kind None that cannot be replayed")]
    assert spool.set_aside_path.read_bytes().splitlines() == [
        b'{"n": 1, "summary": "caf\xe9 \xff\xfe"}', b"[1, 2]", b'{"n":4,"refused":true}']
    assert spool.pending() == 0
    spool.append({"n": 6})  # the spool goes on; the set-aside file is only appended to
    with open(spool.path, "ab") as handle:
        handle.write(b"\x80\n")
    assert spool.drain(deliver, notes.append) == 2
    assert seen == [0, 3, 6]
    assert spool.set_aside_path.read_bytes().splitlines()[-1] == b"\x80"


def _append_many(path: str, writer: int, count: int) -> None:
    spool = Spool(Path(path))
    for n in range(count):
        spool.append({"writer": writer, "n": n, "pad": "x" * 500})


def test_concurrent_processes_never_interleave_lines(spool: Spool) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(str(spool.path), w, 200))
               for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    records: list[dict[str, Any]] = []
    assert spool.drain(records.append) == 600
    for writer in range(3):
        assert [r["n"] for r in records if r["writer"] == writer] == list(range(200))


def test_records_of_a_kind_are_read_in_order_and_left_in_place(spool: Spool) -> None:
    assert spool.records("database_outage") == []
    spool.append({"kind": "database_outage", "n": 1})
    spool.append({"kind": "event", "n": 2})
    with open(spool.path, "ab") as handle:
        handle.write(b'{"kind": "database_outage", "n": \n')  # torn by a crash: passed over
    spool.append({"kind": "database_outage", "n": 3})
    assert [r["n"] for r in spool.records("database_outage")] == [1, 3]
    assert spool.pending() == 4
