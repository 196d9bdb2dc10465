"""``wire_impl``: run a wire test module on both parser implementations.

The AMI and ESL parsers run C loops (``callguard.adapters._cwire``) when the
extension is built and pure Python otherwise (see
:mod:`callguard.adapters.speedups`); both must give the same results, so the
wire tests run once with each.  A module opts in with
``pytestmark = pytest.mark.usefixtures("wire_impl")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .wire_impls import CWIRE, using


@pytest.fixture(params=["c", "python"], scope="module")
def wire_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "c" and CWIRE is None:
        pytest.skip("the C extension callguard.adapters._cwire is not built (no compiler at install time?)")
    with using(request.param):
        yield request.param
