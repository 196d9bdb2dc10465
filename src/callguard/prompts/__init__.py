"""IVR prompts: the catalogue (texts per language), audio conversion for each PBX, checks.

``prompts.toml`` says what each prompt says; ``prompts build`` turns
recordings (or espeak-ng placeholders from ``prompts synth``) into the files
Asterisk and FreeSWITCH play and a manifest of their hashes;
:class:`~callguard.prompts.catalog.PromptCatalog` serves the engine.
"""

from callguard.prompts.catalog import PromptCatalog, default_catalog_path
from callguard.prompts.spec import CatalogError

__all__ = ["CatalogError", "PromptCatalog", "default_catalog_path"]
