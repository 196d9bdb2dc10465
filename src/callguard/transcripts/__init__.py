"""Transcripts as governed vault data, and spoken card numbers found and redacted.

* :mod:`~callguard.transcripts.settings` - the ``[transcripts]`` section (no heavy imports: config uses it).
* :mod:`~callguard.transcripts.engines` - PocketSphinx (embedded) and faster-whisper (local model).
* :mod:`~callguard.transcripts.langmodel` - the call-centre "digits" language model for PocketSphinx.
* :mod:`~callguard.transcripts.spoken` - sans-IO: timed words -> card numbers, expiry dates, security
  codes and configured patterns.
* :mod:`~callguard.transcripts.redact` - sans-IO: findings -> silenced audio samples and a redacted transcript.
"""
