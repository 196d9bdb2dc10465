"""Build runtime objects from :class:`~callguard.config.Config`.

The core takes plain values (it never reads config files); this module is
the one place that knows how config sections map onto them.
"""

from __future__ import annotations

from callguard.config import Config
from callguard.core.jurisdictions import DEFAULT_LANGUAGES
from callguard.core.policy import Policy


def build_policy(config: Config) -> Policy:
    """The site's :class:`Policy` from ``[policy]``."""
    p = config.policy
    languages = {**DEFAULT_LANGUAGES, **{k.upper(): v for k, v in p.languages.items()}}
    return Policy.with_overrides(
        p.jurisdictions,
        default_regime=p.default_regime,
        unknown_regime=p.unknown_regime,
        gdpr_explicit_consent=p.gdpr_explicit_consent,
        home=p.home or None,
        internal_numbers=p.internal_numbers,
        default_region=p.default_region or None,
        default_language=p.default_language,
        languages=languages,
    )
