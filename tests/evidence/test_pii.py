"""Sealing personal data in entries: nothing readable without the key, everything back with it."""

from __future__ import annotations

import json

from callguard.evidence import pii

NUMBER = "+442079460123"


def test_numbers_names_and_text_mentioning_them_are_sealed_and_open_with_their_keys():
    sealer = pii.Sealer()
    offered = {"channel": f"sofia/external/{NUMBER}@203.0.113.5", "language": "en", "parties": [
        {"channel": f"sofia/external/{NUMBER}@203.0.113.5", "number": NUMBER, "name": "Ada Lovelace",
         "role": "caller", "jurisdiction": "GB"},
        {"channel": "sofia/internal/2001", "number": "2001", "name": "Agent", "role": "agent"}]}
    rule = {"regime": "gdpr", "reasons": ["44 20 7946 0123 is not", f"{NUMBER}: GDPR: inform"],
            "parties": [{"number": NUMBER, "jurisdiction": "GB"}]}
    later = {"channel": f"sofia/external/{NUMBER}@203.0.113.5", "what": "caller 442079460123 hung up"}
    sealed, keys = [], {}
    for data in (offered, rule, later):
        out, new, subjects = sealer.seal("call-1", data)
        keys.update({k["kid"]: k["key"] for k in new})
        assert all(subjects[k["kid"]] == k["subject"] for k in new)
        sealed.append(out)
    text = json.dumps(sealed)
    assert NUMBER not in text and "442079460123" not in text and "Ada Lovelace" not in text
    assert "7946 0123" not in text  # the number written another way is sealed too
    assert len({k for k in keys}) == 2  # one key per subject of the call (caller, agent)
    openings = {s["commit"]: pii.opening(s, keys[s["kid"]]) for d in sealed for s in pii.sealed_values(d)}
    assert [pii.reveal(d, openings) for d in sealed] == [offered, rule, later]
    assert pii.reveal(sealed[0], {})["parties"][0]["number"] == pii.ERASED
    commit, opened = next(iter(openings.items()))
    assert pii.check_opening(commit, opened)
    assert not pii.check_opening(commit, {**opened, "value": opened["value"] + "x"})
