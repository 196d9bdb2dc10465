"""Hypothesis: any single edited field of any entry is reported, at that entry and only there."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from callguard.ledger import Ledger, verify
from callguard.ledger.chain import encode_data, entry_hash, stored_entry_hash
from tests.ledger.support import drop_append_only, sample_call

CALLS = 3
N = CALLS * len(sample_call())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'ledger.sqlite'}"
    ledger = Ledger.open(url, "prop@pbx")
    for i in range(CALLS):
        for entry in sample_call(f"call-{i}", 1_714_567_890.0 + 600 * i):
            ledger.append(entry, entry.at + 0.25)
    assert ledger.close(timeout=10)
    drop_append_only(ledger.engine)  # plain edits are refused; the tamperer has DDL rights
    return ledger.engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def connection(chain):
    from sqlalchemy import create_engine

    engine = create_engine(chain)
    with engine.connect() as conn:
        yield conn
    engine.dispose()


FIELDS = {
    "data": st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(encode_data),
    "kind": st.sampled_from(["consent", "hangup", "violation", "recording-stopped"]),
    "call_id": st.text(min_size=1, max_size=20),
    "pbx_time_us": st.integers(0, 2**53),
    "received_at_us": st.integers(0, 2**53),
    "hash": st.text("0123456789abcdef", min_size=64, max_size=64),
    "prev_hash": st.text("0123456789abcdef", min_size=64, max_size=64),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.integers(1, N), field=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_single_edit_is_pinned_to_its_entry(connection, seq, field, data):
    transaction = connection.begin()
    try:
        current = connection.execute(text(f"SELECT {field} FROM ledger_entries WHERE seq = :s"),
                                     {"s": seq}).scalar()
        value = data.draw(FIELDS[field].filter(lambda v: v != current and not (
            field == "data" and json.loads(v) == json.loads(current))), label="new value")
        connection.execute(text(f"UPDATE ledger_entries SET {field} = :v WHERE seq = :s"), {"v": value, "s": seq})
        report = verify(connection)
    finally:
        transaction.rollback()
    assert [p.seq for p in report.problems] == [seq], [str(p) for p in report.problems]


@given(json_values)
def test_stored_data_hashes_the_same_after_a_round_trip(value):
    """What verify re-reads (json.loads of the stored text) hashes like what was written."""
    stored = encode_data({"v": value})
    fields = {"chain_id": "c", "seq": 1, "call_id": "x", "kind": "consent", "pbx_time_us": 1,
              "received_at_us": 2, "prev_hash": "0" * 64}
    again = encode_data(json.loads(stored))
    assert again == stored
    assert entry_hash(data=json.loads(stored), **fields) == entry_hash(data=json.loads(again), **fields)


def test_clean_chain_has_no_problems(connection):
    assert verify(connection).ok and verify(connection).chains[0].entries == N


@given(json_values, st.text(max_size=12), st.text(max_size=12))
@example({"\x7f": None}, "", "")  # DEL: raw in the stored text, \u007f in the canonical form (found in CI)
def test_verify_shortcut_hashes_stored_text_exactly_like_the_canonical_rule(value, call_id, kind):
    """``stored_entry_hash`` (no parsing) agrees with ``entry_hash`` whenever it answers."""
    stored = encode_data({"v": value})
    fields = {"chain_id": "c\u00e9", "seq": 7, "call_id": call_id, "kind": kind, "pbx_time_us": 1,
              "received_at_us": 2, "prev_hash": "0" * 64}
    quick = stored_entry_hash(data_text=stored, **fields)
    assert quick is None or quick == entry_hash(data=json.loads(stored), **fields)
    if stored.isascii() and "\x7f" not in stored:
        assert quick is not None
