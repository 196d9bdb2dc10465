"""Who hears a key pressed on a leg of the fake FreeSWITCH, and what FreeSWITCH keeps of it.

The model behind :meth:`FakeFreeSWITCH.press` (and the ``block_dtmf``,
``uuid_audio`` and ``digits_dialed`` behaviour card capture depends on),
read in FreeSWITCH 1.10.12's source; nothing here is kinder than that:

* A key pressed on a leg is queued on that leg's channel; reading it fires
  the ``DTMF`` event on that leg - without ``variable_*`` headers - and logs
  it for ``digits_dialed``, unless the leg has ``sensitive_dtmf=true``, in
  which case there is no event and no log (``switch_channel_queue_dtmf`` /
  ``switch_channel_dequeue_dtmf``).  A sensitive key is not sent on either
  (``switch_core_session_send_dtmf`` returns first).
* Bridged, the key is sent to the other leg's phone
  (``switch_core_session_send_dtmf``) unless that leg runs ``block_dtmf``
  (``switch_ivr_block_dtmf_session`` hooks send and receive there).  The
  other leg gets no DTMF event for it.  (Real FreeSWITCH also holds a key
  back while a broadcast plays on the pressing leg; the fake always sends
  it, the harsher case.)
* A phone that sends the tone in-band too puts it in the audio: the other
  leg's phone hears it unless ``uuid_audio <leg> start write mute <n>``
  zeroes what is written to it (``session_audio_callback``), and the
  pressing leg's recording writes it unless masked.
* At hangup FreeSWITCH writes every logged key into ``digits_dialed``
  (CDRs, the hang-up event); ``digits_dialed_filter`` replaces what the
  first match of that regex (and each of its groups) covers by ``X``
  (``switch_channel_set_timestamps``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callguard.testing.fake_freeswitch import FakeChannel

#: mod_commands' usage line for uuid_audio (AUDIO_SYNTAX)
AUDIO_USAGE = "-USAGE: <uuid> [start [read|write] [mute|level <level>]|stop]\n"


@dataclass
class Keypad:
    """One leg's DTMF and media state, and what reached its phone."""

    peer: "FakeChannel | None" = None  #: the leg it is bridged to
    dtmf_blocked: bool = False  #: ``block_dtmf`` ran on it (until ``unblock_dtmf``)
    write_mute: int = 0  #: ``uuid_audio start write mute <n>``: frames written to this leg zeroed
    read_mute: int = 0
    #: what reached this leg's phone from another leg's keypad: ("dtmf" | "tone", digit, scenario time)
    heard: list[tuple[str, str, float]] = field(default_factory=list)
    #: files played to this leg by private events (sendmsg / uuid_broadcast), in order
    prompts: list[str] = field(default_factory=list)
    #: keys read on this leg that FreeSWITCH logs for digits_dialed
    log: list[str] = field(default_factory=list)


def sensitive(ch: "FakeChannel") -> bool:
    return ch.variables.get("sensitive_dtmf", "").lower() in ("true", "yes", "on", "1")


def key_pressed(ch: "FakeChannel", digit: str, now: float) -> bool:
    """``digit`` pressed on ``ch``'s phone: send it on, record it; True when the DTMF event fires."""
    if sensitive(ch):
        return False
    ch.keypad.log.append(digit)
    recording = ch.recording
    if recording is not None and recording.audio is not None:
        recording.audio.dtmf(now, digit, audible=not recording.masked)
    peer = ch.keypad.peer
    if peer is not None and not peer.hung_up:
        if not peer.keypad.dtmf_blocked:
            peer.keypad.heard.append(("dtmf", digit, now))
        if not peer.keypad.write_mute:
            peer.keypad.heard.append(("tone", digit, now))
    return True


def uuid_audio(channels: dict[str, "FakeChannel"], args: list[str]) -> str:
    """``api uuid_audio ...`` as mod_commands answers it (session_audio_function)."""
    if len(args) < 2:
        return AUDIO_USAGE
    ch = channels.get(args[0])
    if ch is None or ch.hung_up:
        return "-ERR No such channel!\n"
    if args[1].lower() == "stop":
        ch.keypad.write_mute = ch.keypad.read_mute = 0  # the whole "__audio" media bug goes
        return "+OK\n"
    if args[1].lower() != "start" or len(args) < 5 or args[2].lower() not in ("read", "write"):
        return AUDIO_USAGE
    if args[3].lower() != "mute":
        return AUDIO_USAGE if args[3].lower() != "level" else "+OK\n"
    level = int(args[4]) if re.fullmatch(r"-?\d+", args[4]) else 0  # atoi
    if args[2].lower() == "write":
        ch.keypad.write_mute = level
    else:
        ch.keypad.read_mute = level
    return "+OK\n"


def digits_dialed(ch: "FakeChannel") -> str:
    """The ``digits_dialed`` value FreeSWITCH sets at hangup."""
    logged = "".join(ch.keypad.log)
    if not logged:
        return "none"
    pattern = ch.variables.get("digits_dialed_filter", "")
    if not pattern:
        return logged
    match = re.search(pattern, logged)
    if match is None:
        return logged
    masked = logged
    for index in range(len(match.groups()) + 1):
        part = match.group(index)
        if part:
            masked = masked.replace(part, "X" * len(part))
    return masked


__all__ = ["AUDIO_USAGE", "Keypad", "digits_dialed", "key_pressed", "sensitive", "uuid_audio"]
