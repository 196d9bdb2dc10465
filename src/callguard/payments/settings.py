"""``[payments]`` in callguard.toml: the connector and the capture's limits."""

from __future__ import annotations

from typing import Annotated

from callguard.config_schema import rule, section

_POSITIVE = rule(lambda v: v > 0, "must be more than 0")


@section
class PaymentsConfig:
    """Card capture the agent never hears (README: Taking payments).

    Empty ``url``: the listener takes no card payments (the API says so).
    ``callguard demo`` points it at its embedded gateway.
    """

    url: Annotated[str, rule(lambda v: v == "" or v.startswith("https://"),
                             "{value!r} must be an https:// URL; card data never travels unencrypted")] = ""
    api_key: str = ""  #: sent as "Authorization: Bearer"; better set CALLGUARD_PAYMENTS__API_KEY
    ca_file: str = ""  #: PEM of a private CA for the gateway; empty: the system's trust store
    connect_timeout_s: Annotated[float, _POSITIVE] = 3.0
    read_timeout_s: Annotated[float, _POSITIVE] = 10.0
    attempts: Annotated[int, rule(lambda v: 1 <= v <= 10, "{value} is outside 1..10")] = 3
    collect_postcode: bool = False
    postcode_min_digits: Annotated[int, rule(lambda v: 1 <= v <= 10, "{value} is outside 1..10")] = 5
    postcode_max_digits: Annotated[int, rule(lambda v: 1 <= v <= 10, "{value} is outside 1..10")] = 5
    max_attempts: Annotated[int, rule(lambda v: 1 <= v <= 5, "{value} is outside 1..5")] = 3
    arm_timeout_s: Annotated[float, _POSITIVE] = 5.0
    first_digit_timeout_s: Annotated[float, _POSITIVE] = 20.0
    inter_digit_timeout_s: Annotated[float, _POSITIVE] = 6.0
    max_duration_s: Annotated[float, _POSITIVE] = 240.0


def capture_settings(config: PaymentsConfig):
    from callguard.payments.capture import CaptureSettings

    return CaptureSettings(
        collect_postcode=config.collect_postcode, postcode_min_digits=config.postcode_min_digits,
        postcode_max_digits=config.postcode_max_digits, max_attempts=config.max_attempts,
        arm_timeout_s=config.arm_timeout_s, first_digit_timeout_s=config.first_digit_timeout_s,
        inter_digit_timeout_s=config.inter_digit_timeout_s, max_duration_s=config.max_duration_s)


def connector_settings(config: PaymentsConfig):
    from callguard.payments.connector import ConnectorSettings

    return ConnectorSettings(config.url, config.api_key, config.ca_file, config.connect_timeout_s,
                             config.read_timeout_s, config.attempts)


__all__ = ["PaymentsConfig", "capture_settings", "connector_settings"]
