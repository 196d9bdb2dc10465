"""The optional C extension (``callguard.adapters._cwire``): built where it can be, off when asked, and
indistinguishable from the pure-Python parsers on hostile input.

The grammar itself is tested against the plain reference readers, on both
implementations, in ``asterisk/test_wire_grammar.py`` and
``freeswitch/test_wire_grammar.py``.  Here: random bytes and near-miss
protocol soup, cut into many different reads, must give the C and the
Python paths exactly the same messages, counters and errors, and never
crash the interpreter (run once under AddressSanitizer, see
/work/notes/issue-18.md).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callguard.adapters import speedups
from callguard.adapters.asterisk.wire import AmiParser, AmiProtocolError
from callguard.adapters.freeswitch.wire import ESLParser, ESLProtocolError

from .wire_impls import CWIRE, using

needs_c = pytest.mark.skipif(CWIRE is None, reason="the C extension is not built")


def _can_compile() -> bool:
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return include.exists() and shutil.which(compiler) is not None


@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python headers here: pure Python is expected")
def test_the_extension_is_built_where_a_compiler_exists():
    """`pip install -e .` (setup.py, optional=True) must not have fallen back quietly on a machine that can build."""
    assert CWIRE is not None, ("callguard.adapters._cwire is missing although a compiler and Python.h exist: "
                               "run `.venv/bin/pip install -e '.[test]'` (setup.py builds it), and if that "
                               "does not build it, `pip install -v -e .` shows why")


@needs_c
@pytest.mark.parametrize("value, loaded", [("", True), ("0", True), ("1", False), ("yes", False)])
def test_callguard_no_extensions_switches_it_off(value: str, loaded: bool):
    env = {k: v for k, v in os.environ.items() if k != speedups.ENV_SWITCH}
    env[speedups.ENV_SWITCH] = value
    out = subprocess.run([sys.executable, "-c", "from callguard.adapters import speedups; print(speedups.cwire)"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert ("_cwire" in out) is loaded and ("None" in out) is not loaded


# -- random bytes, many chunkings: C == Python ------------------------------------------------

_AMI_SOUP = [b"Event: ", b"Response: ", b"Follows", b"Response: Follows\r\n", b"ActionID: 1", b"\r\n", b"\r\n\r\n",
             b"\r", b"\n", b": ", b":", b"Asterisk Call Manager/", b"--END COMMAND--", b"\xc3", b"\xa9", b"\xff",
             b"\x00", b"X", b"VarSet", b"Hangup"]
_ESL_SOUP = [b"Content-Type: ", b"text/event-plain", b"api/response", b"command/reply", b"Content-Length: ",
             b"Event-Name: ", b"3", b"17", b"\n", b"\n\n", b":", b": ", b"%", b"%3A", b"%0A", b"%C3", b"%a9", b"%4",
             b"\xc3", b"\xa9", b"\xff", b"\x00", b"\r", b"x"]


def _soup(rng: random.Random, pieces: list[bytes], size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += rng.choice(pieces) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 8))
    return bytes(out)


def _cuts(rng: random.Random, data: bytes) -> list[bytes]:
    style = rng.choice(["whole", "bytes", "small", "big"])
    if style == "whole":
        return [data]
    if style == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    top = 7 if style == "small" else 600
    chunks, pos = [], 0
    while pos < len(data):
        step = rng.randint(0, top)
        chunks.append(data[pos:pos + step])
        pos += step
    return chunks


def _ami(impl: str, chunks: list[bytes], max_message: int, filtered: bool, banner: bool):
    with using(impl):
        parser = AmiParser((lambda name: not name.startswith(b"V")) if filtered else None,
                           expect_banner=banner, max_message=max_message)
    got: list = []
    error = None
    try:
        for chunk in chunks:
            got += [(dict(m), m.body, type(m).__name__) for m in parser.feed(chunk)]
    except AmiProtocolError as exc:
        error = str(exc)
    return got, error, parser.banner, parser.parsed, parser.skipped, parser.garbage, \
        None if error else parser.pending_bytes


def _esl(impl: str, chunks: list[bytes]):
    got: list = []
    error = None
    with using(impl):  # ESL headers pick the implementation when read
        parser = ESLParser()
        try:
            for chunk in chunks:
                for frame in parser.feed(chunk):
                    event = frame.event if frame.is_event else None
                    got.append((frame.headers.decoded(), dict(frame.headers), frame.body,
                                event and (event.headers.decoded(), dict(event.headers), event.body)))
        except ESLProtocolError as exc:
            error = str(exc)
        return got, error, parser.resyncs, None if error else (parser.pending, str(parser.close()))


def _ami_case(rng: random.Random) -> tuple[bytes, Callable]:
    data = _soup(rng, _AMI_SOUP, rng.choice([40, 400, 4000]))
    limit, filtered, banner = rng.choice([64, 300, 1 << 20]), rng.random() < 0.5, rng.random() < 0.5
    return data, lambda impl, chunks: _ami(impl, chunks, limit, filtered, banner)


def _esl_case(rng: random.Random) -> tuple[bytes, Callable]:
    data = _soup(rng, _ESL_SOUP, rng.choice([40, 400, 4000]))
    if rng.random() < 0.5:  # a real frame head first, so the soup gets framed as an event
        data = b"Content-Length: %d\nContent-Type: text/event-plain\n\nEvent-Name: X\n" % len(data) + data
    return data, _esl


@needs_c
@pytest.mark.parametrize("case", [_ami_case, _esl_case], ids=["ami", "esl"])
@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_in_random_reads_give_c_and_python_the_same_answer(case, seed: int):
    rng = random.Random(seed)
    for _ in range(60):
        data, run = case(rng)
        chunks = _cuts(rng, data)
        assert run("c", chunks) == run("python", chunks)


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8), st.integers(8, 200))
def test_arbitrary_bytes_c_equals_python(data: bytes, points: list[int], limit: int):
    marks = sorted({p % (len(data) + 1) for p in points})
    chunks = [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)])]
    assert _ami("c", chunks, limit, True, True) == _ami("python", chunks, limit, True, True)
    assert _esl("c", chunks) == _esl("python", chunks)


@needs_c
def test_c_functions_stay_inside_the_bytes_they_are_given():
    """Arguments a caller could get wrong, and slices whose neighbours would change the answer if read."""
    assert CWIRE is not None
    find_blank = CWIRE.find_blank
    assert find_blank(b"a\n\nb", 0, 4) == 1 and find_blank(b"a\n\nb", 2, 4) == -1
    assert find_blank(b"a\n\nb", -5, 99) == 1 and find_blank(b"a\n\nb", 3, 1) == -1 and find_blank(b"", 0, 0) == -1
    assert find_blank(b"a\n\nb", 0, 2) == -1  # the second LF is outside data[0:2]
    whole = b"A: 1\nB: %4" + b"1\n\n"
    view = memoryview(whole)[:10]  # "A: 1\nB: %4": the escape is cut, the rest must not be read
    assert CWIRE.esl_headers(view, True) == {"A": "1", "B": "%4"}
    assert CWIRE.esl_headers(b"", True) == {} and CWIRE.esl_headers(b":\n:", False) == {}
    with pytest.raises(TypeError):
        CWIRE.esl_headers("text", True)
    framer = CWIRE.AmiFramer(lambda name: True, {}, False, 100, None, dict, ValueError)
    assert framer.feed(b"") == [] and framer.feed(bytearray(b"Response: x\r\n\r")) == []
    assert framer.feed(memoryview(b"\nEvent")) == [{"Response": "x"}] and framer.pending_bytes == 5
    with pytest.raises(ValueError, match="without the empty line"):
        framer.feed(b"y" * 200)
    with pytest.raises(TypeError, match="dict subclass"):
        CWIRE.AmiFramer(lambda name: True, {}, False, 100, None, int, ValueError)


@needs_c
def test_a_name_filter_that_feeds_the_same_parser_is_refused_not_a_crash():
    """The framer holds pointers into its buffer while it calls the filter: a nested feed must not move it."""
    with using("c"):
        parser = AmiParser(lambda name: bool(parser.feed(b"Event: Y\r\n\r\n" * 1000)), expect_banner=False)
    with pytest.raises(RuntimeError, match="called again"):
        parser.feed(b"Event: X\r\nA: 1\r\n\r\n")
