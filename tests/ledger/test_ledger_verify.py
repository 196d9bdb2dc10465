"""Tampering with the stored ledger is detected, and pinned to the right entry."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
from sqlalchemy import create_engine, text

from callguard.ledger import Ledger, verify
from callguard.ledger.chain import entry_hash
from tests.ledger.conftest import pg_base_url, pg_schema
from tests.ledger.support import drop_append_only, execute, sample_call, scalar

CHAIN = "asterisk@pbx1"
N = 14  # entries in sample_call()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def chain_url(request, tmp_path_factory):
    """One chain holding one sample call per backend, written once by the real writer."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('verify') / 'ledger.sqlite'}"
        scope = nullcontext(url)
    else:
        scope = pg_schema(pg_base_url())
    with scope as url:
        ledger = Ledger.open(url, CHAIN)
        for entry in sample_call("call-A"):
            ledger.append(entry, entry.at + 0.001)
        assert ledger.close(timeout=10)
        # Plain edits are refused (test_ledger_append_only.py): the tamperer drops the triggers first.
        engine = create_engine(url)
        drop_append_only(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def chain_engine(chain_url):
    engine = create_engine(chain_url)
    yield engine
    engine.dispose()


@pytest.fixture
def filled(chain_engine):
    """A connection inside a transaction on the chain: tamper, verify, then roll back."""
    with chain_engine.connect() as connection:
        transaction = connection.begin()
        assert verify(connection).ok
        try:
            yield connection
        finally:
            transaction.rollback()


def problems(engine, chain_id=None):
    report = verify(engine, chain_id)
    return [(p.seq, p.what) for p in report.problems]


def only_problem(engine):
    found = problems(engine)
    assert len(found) == 1, found
    return found[0]


def test_clean_chain_verifies(filled):
    report = verify(filled)
    assert report.ok
    (chain,) = report.chains
    assert (chain.chain_id, chain.entries, chain.last_seq, chain.head_seq) == (CHAIN, N, N, N)


def test_edited_data_is_reported_at_its_seq(filled):
    data = json.loads(scalar(filled, "SELECT data FROM ledger_entries WHERE seq = 5"))
    assert data["decision"] == "granted"
    data["decision"] = "declined"
    execute(filled, "UPDATE ledger_entries SET data = :d WHERE seq = 5", d=json.dumps(data))
    seq, what = only_problem(filled)
    assert seq == 5 and "content was edited" in what
    (problem,) = verify(filled).problems
    assert (problem.call_id, problem.kind) == ("call-A", "consent")
    assert "seq 5 (call 'call-A', consent)" in str(problem)


def test_edited_time_is_reported(filled):
    execute(filled, "UPDATE ledger_entries SET pbx_time_us = pbx_time_us - 3000000 WHERE seq = 3")
    seq, what = only_problem(filled)
    assert seq == 3 and "content was edited" in what


def test_edited_hash_is_reported_as_such(filled):
    execute(filled, "UPDATE ledger_entries SET hash = :h WHERE seq = 7", h="f" * 64)
    seq, what = only_problem(filled)
    assert seq == 7 and "stored hash was altered" in what


def test_edited_hash_of_last_entry_is_checked_against_the_head(filled):
    execute(filled, "UPDATE ledger_entries SET hash = :h WHERE seq = :s", h="e" * 64, s=N)
    seq, what = only_problem(filled)
    assert seq == N and "stored hash was altered" in what


def test_data_that_is_not_json_is_reported(filled):
    execute(filled, "UPDATE ledger_entries SET data = 'not json' WHERE seq = 4")
    seq, what = only_problem(filled)
    assert seq == 4 and "not valid JSON" in what


def test_deleted_middle_entry_names_the_missing_seq(filled):
    execute(filled, "DELETE FROM ledger_entries WHERE seq = 6")
    seq, what = only_problem(filled)
    assert seq == 7 and "seq 6 missing (deleted)" in what and "follows seq 5" in what


def test_deleted_first_entry(filled):
    execute(filled, "DELETE FROM ledger_entries WHERE seq = 1")
    seq, what = only_problem(filled)
    assert seq == 2 and "seq 1 missing" in what and "start of the chain" in what


def test_deleted_range(filled):
    execute(filled, "DELETE FROM ledger_entries WHERE seq BETWEEN 4 AND 6")
    seq, what = only_problem(filled)
    assert seq == 7 and "seq 4..6 missing" in what


def test_deleted_tail_is_caught_by_the_chain_head(filled):
    execute(filled, "DELETE FROM ledger_entries WHERE seq > :s", s=N - 2)
    seq, what = only_problem(filled)
    assert seq == N - 1 and f"seq {N - 1}..{N} missing at the end" in what and "truncated" in what


def test_deleted_everything_but_the_head(filled):
    execute(filled, "DELETE FROM ledger_entries")
    (problem,) = verify(filled).problems
    assert "no entries: all deleted" in problem.what


def test_reordered_entries_are_named(filled):
    # Renumber 3 <-> 4: the rows trade places in the chain.
    execute(filled, "UPDATE ledger_entries SET seq = -1 WHERE seq = 3")
    execute(filled, "UPDATE ledger_entries SET seq = 3 WHERE seq = 4")
    execute(filled, "UPDATE ledger_entries SET seq = 4 WHERE seq = -1")
    found = dict(problems(filled))
    assert set(found) == {3, 4}, found
    assert "written as seq 4: it was moved here" in found[3]
    assert "written as seq 3: it was moved here" in found[4]


def test_swapped_entries_are_named(filled):
    # Swap everything except seq between entries 2 and 9.
    cols = ("call_id", "kind", "pbx_time_us", "received_at_us", "data", "prev_hash", "hash")
    rows = {r.seq: r for r in filled.execute(text("SELECT * FROM ledger_entries WHERE seq IN (2, 9)"))}
    for target, source in ((2, 9), (9, 2)):
        sets = ", ".join(f"{c} = :{c}" for c in cols)
        execute(filled, f"UPDATE ledger_entries SET {sets} WHERE seq = :seq", seq=target,
                **{c: getattr(rows[source], c) for c in cols})
    found = dict(problems(filled))
    assert set(found) == {2, 9}, found
    assert "written as seq 9" in found[2] and "written as seq 2" in found[9]


def test_forged_entry_appended_past_the_head(filled):
    last_hash = scalar(filled, "SELECT hash FROM ledger_entries WHERE seq = :s", s=N)
    fields = {"chain_id": CHAIN, "seq": N + 1, "call_id": "call-A", "kind": "consent", "pbx_time_us": 1,
              "received_at_us": 1, "prev_hash": last_hash}
    digest = entry_hash(data={"decision": "granted"}, **fields)
    execute(filled, "INSERT INTO ledger_entries (chain_id, seq, call_id, kind, pbx_time_us, received_at_us, "
            "data, prev_hash, hash) VALUES (:chain_id, :seq, :call_id, :kind, :pbx_time_us, :received_at_us, "
            ":data, :prev_hash, :hash)", data='{"decision":"granted"}', hash=digest, **fields)
    seq, what = only_problem(filled)
    assert seq == N + 1 and "beyond the chain head" in what


def test_last_entry_replaced_with_valid_hash(filled):
    row_prev = scalar(filled, "SELECT prev_hash FROM ledger_entries WHERE seq = :s", s=N)
    pbx = scalar(filled, "SELECT pbx_time_us FROM ledger_entries WHERE seq = :s", s=N)
    data = {"cause": "16", "state": "declined", "offset_s": 120.0}
    digest = entry_hash(chain_id=CHAIN, seq=N, call_id="call-A", kind="hangup", pbx_time_us=pbx,
                        received_at_us=pbx, data=data, prev_hash=row_prev)
    execute(filled, "UPDATE ledger_entries SET data = :d, received_at_us = :r, hash = :h WHERE seq = :s",
            d=json.dumps(data), r=pbx, h=digest, s=N)
    seq, what = only_problem(filled)
    assert seq == N and "chain head" in what and "replaced" in what


def test_deleted_chain_head_is_reported(filled):
    execute(filled, "DELETE FROM chain_heads")
    (problem,) = verify(filled).problems
    assert problem.seq is None and "chain head row is missing" in problem.what


def test_chains_verify_independently(open_ledger, raw_engine):
    a, b = open_ledger("asterisk@pbx1"), open_ledger("freeswitch@pbx2")
    for entry in sample_call("call-A"):
        a.append(entry, entry.at)
    for entry in sample_call("call-B"):
        b.append(entry, entry.at)
    assert a.flush(10) and b.flush(10)
    drop_append_only(raw_engine)
    execute(raw_engine, "UPDATE ledger_entries SET kind = 'consent' WHERE chain_id = 'freeswitch@pbx2' AND seq = 8")
    report = verify(raw_engine)
    by_chain = {c.chain_id: c for c in report.chains}
    assert by_chain["asterisk@pbx1"].ok and by_chain["asterisk@pbx1"].entries == N
    assert [p.seq for p in by_chain["freeswitch@pbx2"].problems] == [8]
    assert verify(raw_engine, "asterisk@pbx1").ok
    assert not verify(raw_engine, "freeswitch@pbx2").ok
