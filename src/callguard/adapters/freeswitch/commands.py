"""Engine commands -> ESL command bytes, and nothing from the caller in them.

(The ESL framing itself, bytes <-> frames, is :mod:`.wire`.)

Every argument that reaches FreeSWITCH is one of: a channel UUID that
passed :func:`~callguard.adapters.freeswitch.translate.safe_uuid`, a path
built from the configured directories and a name the engine generated
(:func:`~callguard.core.commands.recording_file_name`), a catalogued prompt
id + language (checked against a strict pattern), a fixed outcome word, or
the configured decline destination (checked at start-up).  The encoders in
:mod:`.wire` additionally refuse CR/LF/NUL, so even a bug upstream
cannot split a command.

Why we build ``play_and_get_digits`` ourselves instead of calling
greenswitch's ``OutboundSession.play_and_get_digits``: greenswitch 0.0.19
formats all eleven arguments with ``%s``, so the ones left out are sent as
the words ``None None``; FreeSWITCH then treats ``None`` as a
transfer-on-failure target and, on no input, hangs the caller up with
NO_ROUTE_DESTINATION (verified on 1.10.12).  We pass the ten arguments
that matter explicitly and leave out the eleventh on purpose: any value
there, even an empty-looking one, is a transfer target, and a consent
timeout must continue the call, not move it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from callguard.core.commands import OUTCOMES, PlayAndCollect, PromptRef

from .wire import api, encode_command, sendmsg_execute

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DIGITS = re.compile(r"[0-9*#]{1,12}")
#: ``<extension> [<dialplan> [<context>]]`` as ``transfer`` takes it.
_DESTINATION = re.compile(r"[A-Za-z0-9_+*#.@-]{1,64}( [A-Za-z0-9_-]{1,32}( [A-Za-z0-9_.-]{1,64})?)?")
_DIRECTORY = re.compile(r"/[A-Za-z0-9_./-]{0,200}")
#: What a prompt path may contain: play_and_get_digits splits on spaces,
#: and FreeSWITCH would expand ``${...}`` or read ``{...}`` as variables.
_PROMPT_PATH = re.compile(r"/[A-Za-z0-9/._+@-]{1,300}")

#: ``(prompt, sample rate) -> absolute file path``; the prompt catalogue's
#: ``path_for(ref, "freeswitch", rate)`` in production.
PromptPath = Callable[[PromptRef, int], str]

#: The channel variable ``play_and_get_digits`` stores the keypress in.
COLLECT_VARIABLE = "callguard_digit"
#: The variable the dialplan branches on after the socket returns.
DECISION_VARIABLE = "callguard_decision"
#: Global variable the listener keeps fresh (epoch seconds).
HEARTBEAT_VARIABLE = "callguard_heartbeat"
#: the recording's path on the recorded leg: callguard_features.xml masks it from the
#: dialplan itself when a pause or payment segment starts (no listener needed)
RECORDING_VARIABLE = "callguard_recording"


class WireError(ValueError):
    """A configured value cannot be put into a FreeSWITCH command safely."""


def check_directory(path: str, what: str) -> str:
    """An absolute directory made of path-safe characters (no spaces, no ``..``)."""
    path = path.rstrip("/") or "/"
    if not _DIRECTORY.fullmatch(path) or "/../" in path + "/" or "//" in path:
        raise WireError(f"{what} {path!r} must be an absolute path of letters, digits and _ . - / "
                        f"(no spaces, no '..'): FreeSWITCH splits application arguments on spaces")
    return path


def check_destination(destination: str) -> str:
    """A ``transfer`` target as written in callguard.toml."""
    if not _DESTINATION.fullmatch(destination):
        raise WireError(f"decline destination {destination!r} must look like '<extension> [XML [<context>]]', "
                        f"e.g. 'callguard_declined XML default'")
    return destination


def directory_prompts(base: str, extension: str = "wav") -> PromptPath:
    """``<base>/<lang>/callguard/<id>.<ext>``: prompts without a built catalogue (tests, demos)."""
    base = check_directory(base, "prompt directory")

    def path(prompt: PromptRef, rate: int) -> str:
        if not _TOKEN.fullmatch(prompt.prompt_id) or not _TOKEN.fullmatch(prompt.language):
            raise WireError(f"prompt {prompt.prompt_id!r}/{prompt.language!r} has unsafe characters")
        return f"{base}/{prompt.language}/callguard/{prompt.prompt_id}.{extension}"

    return path


@dataclass(frozen=True)
class Wire:
    """Builds the ESL bytes for one listener's configuration."""

    recording_dir: str
    prompt_source: PromptPath
    #: played when a key outside the valid set is pressed (PAGD's invalid file)
    invalid_file: str = "silence_stream://250"

    def __post_init__(self) -> None:
        object.__setattr__(self, "recording_dir", check_directory(self.recording_dir, "[freeswitch] recording_dir"))

    # -- paths -------------------------------------------------------------------

    def recording_path(self, file_name: str) -> str:
        if not _TOKEN.fullmatch(file_name) or ".." in file_name:
            raise WireError(f"recording file name {file_name!r} is not a generated name")
        return f"{self.recording_dir}/{file_name}"

    def prompt_path(self, prompt: PromptRef, rate: int = 8000) -> str:
        path = self.prompt_source(prompt, rate)
        if not _PROMPT_PATH.fullmatch(path) or "/../" in path:
            raise WireError(f"prompt file {path!r} is not a plain absolute path; FreeSWITCH would split or "
                            f"expand it")
        return path

    # -- outbound socket (per-call applications) ------------------------------------

    def play_and_collect(self, cmd: PlayAndCollect, rate: int = 8000) -> bytes:
        """Notice + consent: every argument explicit (see the module docstring)."""
        valid = cmd.valid_digits or "0123456789*#"
        if not _DIGITS.fullmatch(valid):
            raise WireError(f"valid digits {valid!r} are not keypad digits")
        # A terminator key is swallowed (a lone '#' reads as no input), so
        # only use '#' when it is not an answer; 'none' matches no key.
        terminators = "#" if "#" not in valid else "none"
        timeout = max(1000, int(cmd.timeout_ms))
        max_digits = max(1, int(cmd.max_digits))
        args = [
            "1",                        # min digits
            str(max_digits),            # max digits
            "1",                        # tries: the engine runs retries itself (and logs each)
            str(timeout),               # ms to wait after the prompt
            terminators,
            self.prompt_path(cmd.prompt, rate),
            self.invalid_file,          # played on a key outside the regex
            COLLECT_VARIABLE,
            f"^[{valid}]+$",            # FreeSWITCH searches, so anchor it
            str(timeout),               # inter-digit timeout
        ]
        return sendmsg_execute("play_and_get_digits", " ".join(args))

    def play_prompt(self, prompt: PromptRef, rate: int = 8000) -> bytes:
        return sendmsg_execute("playback", self.prompt_path(prompt, rate))

    def record_session(self, file_name: str) -> bytes:
        return sendmsg_execute("record_session", self.recording_path(file_name))

    def name_recording(self, file_name: str) -> bytes:
        """``set callguard_recording=<path>`` on the parked leg (before ``record_session``)."""
        return sendmsg_execute("set", f"{RECORDING_VARIABLE}={self.recording_path(file_name)}")

    def name_recording_api(self, uuid: str, file_name: str) -> bytes:
        """The same for a leg that left the socket: ``uuid_setvar``."""
        return api(f"uuid_setvar {uuid} {RECORDING_VARIABLE} {self.recording_path(file_name)}")

    def stop_record_session(self, file_name: str) -> bytes:
        return sendmsg_execute("stop_record_session", self.recording_path(file_name))

    @staticmethod
    def set_decision(outcome: str) -> bytes:
        if outcome not in OUTCOMES:
            raise WireError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        return sendmsg_execute("set", f"{DECISION_VARIABLE}={outcome}")

    @staticmethod
    def transfer(destination: str) -> bytes:
        return sendmsg_execute("transfer", check_destination(destination))

    @staticmethod
    def exit() -> bytes:
        return encode_command("exit")

    # -- inbound connection (api) ---------------------------------------------------

    def start(self, uuid: str, file_name: str) -> bytes:
        """Start recording a channel that is no longer on the outbound socket."""
        return api(f"uuid_record {uuid} start {self.recording_path(file_name)}")

    def mask(self, uuid: str, file_name: str) -> bytes:
        return api(f"uuid_record {uuid} mask {self.recording_path(file_name)}")

    def unmask(self, uuid: str, file_name: str) -> bytes:
        return api(f"uuid_record {uuid} unmask {self.recording_path(file_name)}")

    def stop(self, uuid: str, file_name: str) -> bytes:
        return api(f"uuid_record {uuid} stop {self.recording_path(file_name)}")

    @staticmethod
    def sensitive_dtmf(uuid: str, on: bool) -> bytes:
        """Keep digits out of FreeSWITCH's logs during a payment segment."""
        return api(f"uuid_setvar {uuid} sensitive_dtmf {'true' if on else 'false'}")

    @staticmethod
    def heartbeat(now: float) -> bytes:
        return api(f"global_setvar {HEARTBEAT_VARIABLE}={int(now)}")

    @staticmethod
    def exists(uuid: str) -> bytes:
        return api(f"uuid_exists {uuid}")

    @staticmethod
    def getvar(uuid: str, name: str) -> bytes:
        if not _TOKEN.fullmatch(name):
            raise WireError(f"variable name {name!r} is not a plain word")
        return api(f"uuid_getvar {uuid} {name}")

    @staticmethod
    def setvar(uuid: str, name: str, value: str) -> bytes:
        if not _TOKEN.fullmatch(name) or not _TOKEN.fullmatch(value):
            raise WireError(f"variable {name!r}={value!r} is not a plain word")
        return api(f"uuid_setvar {uuid} {name} {value}")

    @staticmethod
    def channels() -> bytes:
        """Every channel FreeSWITCH has (adoption reads only UUIDs, names and rates from it)."""
        return api("show channels as json")

    @staticmethod
    def buglist(uuid: str) -> bytes:
        """The media bugs on a channel: a running ``record_session`` shows as ``session_record``."""
        return api(f"uuid_buglist {uuid}")

    @staticmethod
    def unsetvar(uuid: str, name: str) -> bytes:
        """``uuid_setvar <uuid> <name>`` with no value unsets the variable."""
        if not _TOKEN.fullmatch(name):
            raise WireError(f"variable name {name!r} is not a plain word")
        return api(f"uuid_setvar {uuid} {name}")


__all__ = [
    "COLLECT_VARIABLE",
    "RECORDING_VARIABLE",
    "DECISION_VARIABLE",
    "HEARTBEAT_VARIABLE",
    "PromptPath",
    "Wire",
    "WireError",
    "directory_prompts",
    "check_destination",
    "check_directory",
]
