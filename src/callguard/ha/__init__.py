"""High availability: one active listener per PBX, warm standbys, leader lease on PostgreSQL.

* :mod:`callguard.ha.election` is the sans-IO decision: given when each lease
  renewal was *sent* and what the database answered, which role this node
  has and the latest moment it may still act.  No clock, no database.
* :mod:`callguard.ha.lease` is the storage: one row per scope in
  ``ha_leases`` on the ledger's PostgreSQL, taken and renewed by a single
  atomic ``INSERT .. ON CONFLICT .. WHERE`` against the database's clock.
* :mod:`callguard.ha.node` runs the two together on a thread and tells the
  listener when to act and when to stop.
"""
