"""Verifiable evidence: Merkle tree maths, signed checkpoints, bundles, personal-data sealing.

The modules here are pure (no database, no network) except where named
(``witness``, ``checkpointer``): storage of tree nodes and checkpoints lives
in :mod:`callguard.ledger`, as transparency-dev's tessera keeps its tree
maths apart from its tiles.
"""
