"""Card payments taken from the caller's keypad, out of the agent's and the recording's reach.

* :mod:`.card` - brands, lengths, Luhn, expiry, masks (pure functions);
* :mod:`.secret` - the only holders of keyed digits, wiped on release;
* :mod:`.capture` - one payment as a sans-IO state machine;
* :mod:`.connector` - the JSON-over-HTTPS contract to the payment gateway;
* :mod:`.desk` - runs captures next to the engine (PBX, timers, connector);
* :mod:`.progress` - the masked view for the agent's screens.
"""
