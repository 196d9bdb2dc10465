"""Card digits in memory: one holder, masked in every printable form, wiped on release.

The digits a caller keys live in :class:`DigitBuffer` objects inside the
capture session, then move into one :class:`CardData` handed to the
connector, which wipes it as soon as the gateway has answered.  Both keep
their digits in ``bytearray`` so they can be overwritten in place; their
``repr``/``str`` show only the mask, and they refuse to be pickled or
copied, so a stray log line, a traceback's locals in a crash report or a
multiprocessing queue cannot carry them.

What Python cannot promise: the JSON body built for the HTTPS request and
the TLS buffers are ordinary ``bytes`` that live until the garbage collector
reuses their memory.  We keep them short-lived (built inside the request,
released with it) and never hold a reference after the connector returns.
"""

from __future__ import annotations

from typing import NoReturn


class _Unshareable:
    """Refuses pickling and copying: card digits stay in the one object that holds them."""

    __slots__ = ()

    def __reduce__(self) -> NoReturn:
        raise TypeError("card data cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("card data cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("card data cannot be copied")


def _wipe(buffer: bytearray) -> None:
    for i in range(len(buffer)):
        buffer[i] = 0
    buffer.clear()


class DigitBuffer(_Unshareable):
    """Keypad digits of one field, overwritten with zeros on :meth:`wipe`."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def append(self, digit: str) -> None:
        self._data += digit.encode("ascii")

    def __len__(self) -> int:
        return len(self._data)

    def reveal(self) -> str:
        """The digits, for validation and the connector only: never log or store the result."""
        return self._data.decode("ascii")

    def wipe(self) -> None:
        _wipe(self._data)

    def __repr__(self) -> str:
        return f"<DigitBuffer {len(self._data)} digits>"

    __str__ = __repr__


class CardData(_Unshareable):
    """A complete card as keyed: number, expiry (MMYY), security code, optional postcode.

    The only safe views are :attr:`brand`, :attr:`last4` and
    :meth:`__repr__`.  :meth:`fields` gives the connector the digits to send;
    :meth:`wipe` overwrites them.
    """

    __slots__ = ("_number", "_expiry", "_cvv", "_postcode", "brand", "last4", "exp_month", "exp_year")

    def __init__(self, number: str, expiry_mmyy: str, cvv: str, postcode: str, *, brand: str,
                 exp_year: int) -> None:
        self._number = bytearray(number.encode("ascii"))
        self._expiry = bytearray(expiry_mmyy.encode("ascii"))
        self._cvv = bytearray(cvv.encode("ascii"))
        self._postcode = bytearray(postcode.encode("ascii"))
        self.brand = brand
        self.last4 = number[-4:]
        self.exp_month = int(expiry_mmyy[:2])
        self.exp_year = exp_year

    @property
    def wiped(self) -> bool:
        return not self._number

    def fields(self) -> dict[str, str | int]:
        """The card for the connector's request body (see :mod:`callguard.payments.connector`)."""
        if self.wiped:
            raise ValueError("the card was already wiped; start the payment again")
        out: dict[str, str | int] = {"number": self._number.decode(), "exp_month": self.exp_month,
                                     "exp_year": self.exp_year, "cvc": self._cvv.decode()}
        if self._postcode:
            out["postcode"] = self._postcode.decode()
        return out

    def wipe(self) -> None:
        for buf in (self._number, self._expiry, self._cvv, self._postcode):
            _wipe(buf)

    def __repr__(self) -> str:
        state = "wiped" if self.wiped else f"{self.brand} ending {self.last4}"
        return f"<CardData {state}>"

    __str__ = __repr__


__all__ = ["CardData", "DigitBuffer"]
