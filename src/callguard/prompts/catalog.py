"""The prompt resolver the engine uses: catalogue + build manifest -> PromptRef and file paths.

:class:`PromptCatalog` satisfies :class:`callguard.core.prompts.PromptResolver`.
It is loaded once at start-up (reads two small files, no audio) and then
answers from memory: the engine resolves a prompt on the notice path of
every call.

Where the defaults live: the catalogue shipped with callguard is
``ivr_prompts/`` in the source tree; the package reaches it as
``callguard/data/prompts`` (a symlink in the source tree, real files in a
wheel, where setuptools copies the link's target as package data), so the
same code finds it in a checkout, an editable install and a wheel.

What the PBX is told to play (:meth:`PromptCatalog.path_for`):

* Asterisk: an absolute path without extension, ``<dir>/<lang>/callguard/<id>``;
  Asterisk picks the cheapest of ``.ulaw`` / ``.sln16`` / ``.wav`` for the call.
* FreeSWITCH: the absolute ``.wav`` path for the requested rate,
  ``<dir>/<lang>/callguard/<rate>/<id>.wav`` (the nearest built rate if that
  one was not built; FreeSWITCH resamples).

``<dir>`` is ``[prompts] asterisk_dir`` / ``freeswitch_dir`` once
``callguard prompts install`` has copied the files there, otherwise the
build directory itself (fine when the listener and the PBX share a host).
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from callguard.core.commands import PromptRef
from callguard.core.prompts import UnknownPrompt
from callguard.prompts.formats import FORMATS, PBXES, OutputFormat
from callguard.prompts.manifest import BuiltPrompt, Manifest, read_manifest
from callguard.prompts.spec import CatalogError, CatalogSpec, PromptSpec, load_catalog_spec

if TYPE_CHECKING:
    from callguard.config import Config

#: Characters a path handed to GET DATA / play_and_get_digits may contain:
#: both split their arguments on spaces, and quotes or braces would be
#: interpreted.  Our own parts (language, id) are already restricted.
_SAFE_PATH = re.compile(r"[A-Za-z0-9/._+@:-]+")


def default_catalog_path() -> Path:
    """The catalogue shipped with callguard (see the module docstring)."""
    return (Path(str(importlib.resources.files("callguard"))) / "data" / "prompts" / "prompts.toml").resolve()


def _check_base(name: str, base: Path) -> None:
    if not _SAFE_PATH.fullmatch(str(base)):
        raise CatalogError([f"{name} {str(base)!r}: the PBX cannot play files from a path with spaces or "
                            f"special characters (GET DATA and play_and_get_digits split on spaces); install "
                            f"the prompts to a plain path, e.g. `callguard prompts install --asterisk "
                            f"/var/lib/asterisk/sounds`"])


class PromptCatalog:
    """Built prompts, by id and language, ready for the engine and the adapters."""

    def __init__(self, spec: CatalogSpec, manifest: Manifest, build_dir: Path, *,
                 languages: Iterable[str] | None = None, asterisk_dir: Path | None = None,
                 freeswitch_dir: Path | None = None):
        self.spec = spec
        self.manifest = manifest
        self.build_dir = build_dir.absolute()
        self.configured_languages = tuple(languages) if languages is not None else None
        self.pbx_dirs = {
            "asterisk": (asterisk_dir or self.build_dir / "asterisk").absolute(),
            "freeswitch": (freeswitch_dir or self.build_dir / "freeswitch").absolute(),
        }
        for pbx, base in self.pbx_dirs.items():
            _check_base(f"{pbx} prompt directory", base)
        self._complete = frozenset(
            lang for lang in spec.languages
            if all(manifest.get(pid, lang) is not None for pid in spec.prompts)
        )
        if self.configured_languages is not None:
            self._complete &= frozenset(self.configured_languages)
        # the catalogue never changes once loaded: answer the per-call
        # questions (resolve, path_for) from dictionaries
        self._refs = {
            (b.prompt_id, b.language): PromptRef(b.prompt_id, b.language, b.sha256, b.duration_s)
            for b in manifest.entries()
            if b.prompt_id in spec.prompts and b.language in spec.prompts[b.prompt_id].texts
            and (self.configured_languages is None or b.language in self.configured_languages)
        }
        self._paths: dict[tuple[PromptRef, str, int], str] = {}

    # -- construction -------------------------------------------------------

    @classmethod
    def load(cls, catalog_path: str | Path | None = None, audio_dir: str | Path | None = None, *,
             languages: Iterable[str] | None = None, asterisk_dir: str | Path | None = None,
             freeswitch_dir: str | Path | None = None) -> "PromptCatalog":
        """Read ``prompts.toml`` and the manifest in ``audio_dir`` (its build dir by default).

        ``None`` means the catalogue shipped with callguard.  ``languages``
        limits :meth:`languages` to the site's configured ones.  Raises
        :class:`CatalogError` with every problem and the command that fixes it.
        """
        path = Path(catalog_path) if catalog_path else default_catalog_path()
        spec = load_catalog_spec(path)
        build_dir = Path(audio_dir) if audio_dir else spec.build_dir
        manifest = read_manifest(build_dir)
        if manifest is None:
            raise CatalogError([f"{build_dir}: no build manifest; run `callguard prompts build` "
                                f"(or `callguard prompts synth` first if there are no recordings yet)"])
        return cls(spec, manifest, build_dir, languages=languages,
                   asterisk_dir=Path(asterisk_dir) if asterisk_dir else None,
                   freeswitch_dir=Path(freeswitch_dir) if freeswitch_dir else None)

    @classmethod
    def from_config(cls, config: "Config") -> "PromptCatalog":
        """The catalogue ``[prompts]`` names, restricted to its languages.

        Relative paths in callguard.toml are relative to the file itself.
        """
        p = config.prompts

        def resolve(value: str) -> Path | None:
            if not value:
                return None
            path = Path(value).expanduser()
            source = Path(config.source)
            if not path.is_absolute() and source.is_file():
                path = source.parent / path
            return path

        return cls.load(resolve(p.catalog), resolve(p.audio_dir), languages=p.languages,
                        asterisk_dir=resolve(p.asterisk_dir), freeswitch_dir=resolve(p.freeswitch_dir))

    # -- PromptResolver -----------------------------------------------------

    def languages(self) -> frozenset[str]:
        """Languages with built audio for every prompt (and configured, if restricted)."""
        return self._complete

    def resolve(self, prompt_id: str, language: str) -> PromptRef:
        """The built prompt; :class:`UnknownPrompt` says what is missing and how to fix it."""
        ref = self._refs.get((prompt_id, language))
        if ref is None:
            built = self._built(prompt_id, language)  # raises the precise error
            ref = PromptRef(prompt_id, language, built.sha256, built.duration_s)
        return ref

    def _unknown(self, prompt_id: str) -> UnknownPrompt:
        close = difflib.get_close_matches(prompt_id, list(self.spec.prompts), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return UnknownPrompt(f"unknown prompt {prompt_id!r}{hint}; {self.spec.path} has: {', '.join(self.spec.prompts)}")

    def _built(self, prompt_id: str, language: str) -> BuiltPrompt:
        where = self.spec.path
        prompt = self.spec.prompts.get(prompt_id)
        if prompt is None:
            raise self._unknown(prompt_id)
        if language not in prompt.texts:
            raise UnknownPrompt(f"prompt {prompt_id!r} has no {language!r} version in {where} (it has "
                                f"{', '.join(sorted(prompt.texts))}); add text.{language} and a recording, "
                                f"then run `callguard prompts build`")
        if self.configured_languages is not None and language not in self.configured_languages:
            raise UnknownPrompt(f"language {language!r} is not in [prompts] languages "
                                f"({', '.join(self.configured_languages)})")
        built = self.manifest.get(prompt_id, language)
        if built is None:
            raise UnknownPrompt(f"prompt {prompt_id!r} ({language}) is in {where} but has not been built; "
                                f"run `callguard prompts build`")
        return built

    # -- what the adapters need ---------------------------------------------

    def prompt(self, prompt_id: str) -> PromptSpec:
        """The catalogue entry (purpose, texts) for ``prompt_id``."""
        prompt = self.spec.prompts.get(prompt_id)
        if prompt is None:
            raise self._unknown(prompt_id)
        return prompt

    def built(self, ref: PromptRef) -> BuiltPrompt:
        """The manifest entry for ``ref``; refuses a ref from another build."""
        built = self._built(ref.prompt_id, ref.language)
        if ref.sha256 and ref.sha256 != built.sha256:
            raise UnknownPrompt(f"prompt {ref.prompt_id!r} ({ref.language}) was rebuilt: the reference has "
                                f"hash {ref.sha256[:12]}..., the catalogue {built.sha256[:12]}...; "
                                f"resolve it again so the ledger names what is played")
        return built

    def _format_for(self, built: BuiltPrompt, pbx: str, rate: int) -> OutputFormat:
        if pbx not in PBXES:
            raise ValueError(f"pbx must be one of {', '.join(PBXES)}, got {pbx!r}")
        if rate <= 0:
            raise ValueError(f"rate must be a positive sample rate in Hz, got {rate!r}")
        candidates = [FORMATS[name] for name in built.files if FORMATS.get(name) and FORMATS[name].pbx == pbx]
        if not candidates:
            raise UnknownPrompt(f"prompt {built.prompt_id!r} ({built.language}) was not built for {pbx}; add "
                                f"{pbx} formats to [build] formats in {self.spec.path} and run "
                                f"`callguard prompts build`")
        # exact rate first, then the nearest; on a tie the higher rate
        return min(candidates, key=lambda f: (abs(f.rate - rate), -f.rate, f.name))

    def path_for(self, ref: PromptRef, pbx: str, rate: int = 8000) -> str:
        """What the adapter puts into ``GET DATA`` (Asterisk) or ``play_and_get_digits`` (FreeSWITCH)."""
        cached = self._paths.get((ref, pbx, rate))
        if cached is not None:
            return cached
        built = self.built(ref)
        fmt = self._format_for(built, pbx, rate)
        path = self.pbx_dirs[pbx] / fmt.relpath(ref.prompt_id, ref.language)
        result = str(path.with_suffix("")) if pbx == "asterisk" else str(path)
        self._paths[(ref, pbx, rate)] = result
        return result

    def file_for(self, ref: PromptRef, format_name: str) -> Path:
        """The built file of one format (for checks, install and tests)."""
        built = self.built(ref)
        if format_name not in built.files:
            raise UnknownPrompt(f"prompt {ref.prompt_id!r} ({ref.language}) has no {format_name!r} file; built: "
                                f"{', '.join(built.files)}")
        return self.build_dir / built.files[format_name].path

    def text(self, prompt_id: str, language: str) -> str:
        """The exact words of the prompt in ``language``."""
        self._built(prompt_id, language)
        return self.spec.prompts[prompt_id].texts[language]
