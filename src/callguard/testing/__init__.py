"""Public test helpers: fake PBX servers on real sockets and scenario runners.

Like ``structlog.testing``, this is part of the public API so sites can test
their own dialplans and policies against the same fakes callguard's own
suite uses.
"""
