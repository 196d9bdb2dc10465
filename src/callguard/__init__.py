"""callguard: notice, consent, payment pauses and evidence for call recording."""

__version__ = "0.1.0"
