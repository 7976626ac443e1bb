"""Reading and validating dataset manifests (``data_manifests/*.toml``).

A manifest says what a dataset *is*: where its files come from, how to check them, what the
loader should find after extraction, its license and citation, and, for context-leakage
metrics, which context regions pair with which classes. Schema (every key but ``name`` and
``license`` is optional; a manifest that lists files must also give ``citation``)::

    name = "coco2017-val"            # must equal the file's stem
    title = "..."
    loader = "coco"                  # default dataset factory (others in `loaders`)
    loaders = ["coco", "coco_panoptic"]
    license = "..."
    citation = "..."
    homepage = "https://..."

    [[files]]                        # one download each
    url = "https://.../val2017.zip"
    path = "val2017.zip"             # archives: name in the download cache <root>/.downloads/
                                     # plain files: destination relative to <root>
    sha256 = "<64 hex>"              # and/or md5 = "<32 hex>" where that is all that is published
    hash_source = "who published or computed the hash"
    size = 815585330                 # bytes, optional
    extract_to = "."                 # present => archive (zip / tar[.gz|.bz2|.xz]) extracted here
    members = ["annotations/panoptic_val2017.*"]   # extract only these (fnmatch globs)
    nested = ["annotations/panoptic_val2017.zip"]  # archives inside the archive, extracted in place
    each = { n = [1001, 1700] }      # template: one download per integer n (inclusive), `{n}`
                                     # substituted in url and path

    [[checks]]                       # what `groundbench data verify` counts after extraction
    glob = "val2017/*.jpg"
    count = 5000                     # or min_count = ...
    [[checks]]
    json = "annotations/instances_val2017.json"
    key = "images"
    count = 5000

    [splits.val2017]                 # split name -> facts about it (at least its image count)
    count = 5000

    [context_regions]                # region name -> dataset categories it unites
    water = ["sea", "river", "water-other"]
    [context_pairs]                  # class -> context region names (leakage metrics)
    boat = ["water"]

Every problem is reported as a :class:`ManifestError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.registry import manifest_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FILE_KEYS = {
    "url", "path", "sha256", "md5", "hash_source", "size", "extract_to", "members", "nested",
    "each", "note",
}
CHECK_KEYS = {"glob", "json", "key", "count", "min_count", "note"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or breaks the schema."""


@dataclass(frozen=True)
class FileEntry:
    """One file to download. ``url`` and ``path`` have any ``each`` template expanded."""

    url: str
    path: str
    sha256: str | None = None
    md5: str | None = None
    hash_source: str = ""
    size: int | None = None
    extract_to: str | None = None
    members: tuple[str, ...] = ()
    nested: tuple[str, ...] = ()
    note: str = ""

    @property
    def is_archive(self) -> bool:
        return self.extract_to is not None

    @property
    def known_hash(self) -> str | None:
        """The hash in pooch's ``alg:hex`` form, sha256 preferred."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.md5:
            return f"md5:{self.md5}"
        return None


@dataclass(frozen=True)
class Check:
    """A count the extracted data must show: files matching ``glob``, or entries under ``key``
    of the JSON file ``json``."""

    glob: str | None = None
    json: str | None = None
    key: str | None = None
    count: int | None = None
    min_count: int | None = None
    note: str = ""

    def describe(self) -> str:
        what = f"{self.glob}" if self.glob else f"{self.json} [{self.key}]"
        want = f"= {self.count}" if self.count is not None else f">= {self.min_count}"
        return f"{what} {want}"


@dataclass(frozen=True)
class Manifest:
    name: str
    path: Path
    sha256: str
    license: str
    title: str = ""
    citation: str = ""
    homepage: str = ""
    loaders: tuple[str, ...] = ()
    files: tuple[FileEntry, ...] = ()
    checks: tuple[Check, ...] = ()
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    context_regions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    context_pairs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def regions_for(self, label: str) -> dict[str, tuple[str, ...]]:
        """Context regions of class ``label``: region name -> dataset categories it unites (a
        region not defined in ``context_regions`` stands for the category of the same name)."""
        return {
            region: self.context_regions.get(region, (region,))
            for region in self.context_pairs.get(label, ())
        }

    def to_dict(self) -> dict[str, Any]:
        """The manifest as the dataset's ``.manifest`` dict: the TOML content plus the file's
        sha256 (for provenance)."""
        out = dict(self.raw)
        out["manifest_sha256"] = self.sha256
        out["manifest_path"] = str(self.path)
        return out


def list_manifests() -> list[str]:
    """Names of the shipped manifests."""
    return sorted(p.stem for p in manifest_dir().glob("*.toml"))


def manifest_path(name_or_path: str | Path) -> Path:
    """A shipped manifest by name, or any ``.toml`` file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ManifestError(f"{path}: manifest file not found")
        return path
    path = manifest_dir() / f"{text}.toml"
    if not path.is_file():
        known = ", ".join(list_manifests()) or "none"
        raise ManifestError(f"unknown dataset manifest {text!r} (shipped: {known})")
    return path


def load_manifest(name_or_path: str | Path) -> Manifest:
    """Read and validate a manifest; raises :class:`ManifestError` naming the file."""
    path = manifest_path(name_or_path)
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid TOML ({exc})") from exc
    return parse_manifest(raw, path, hashlib.sha256(data).hexdigest())


def _fail(path: Path, where: str, problem: str) -> ManifestError:
    return ManifestError(f"{path}: {where}: {problem}")


def _str(raw: dict, key: str, path: Path, where: str, required: bool = False) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            raise _fail(path, where, f"missing required key {key!r}")
        return ""
    if not isinstance(value, str):
        raise _fail(path, where, f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _str_list(value: Any, path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, where, "must be a list of strings")
    return tuple(value)


def _count(value: Any, path: Path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, where, f"must be a non-negative integer, got {value!r}")
    return value


def _relative(value: str, path: Path, where: str) -> str:
    """A path inside the dataset root: relative, no '..' components."""
    parts = re.split(r"[\\/]+", value)
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value) or ".." in parts:
        raise _fail(path, where, f"{value!r} must be a relative path inside the dataset root")
    return value


def _parse_file(raw: Any, index: int, path: Path) -> list[FileEntry]:
    where = f"files[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a table")
    unknown = set(raw) - FILE_KEYS
    if unknown:
        raise _fail(path, where, f"unknown keys {sorted(unknown)} (allowed: {sorted(FILE_KEYS)})")
    url = _str(raw, "url", path, where, required=True)
    if not re.match(r"^(https?|ftp)://", url):
        raise _fail(path, where, f"url {url!r} must start with http://, https:// or ftp://")
    dest = _str(raw, "path", path, where) or url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    hashes = {}
    for alg in ("sha256", "md5"):
        value = _str(raw, alg, path, where).lower()
        if value and not _HEX[alg].match(value):
            raise _fail(path, where, f"{alg} {value!r} is not a {alg} hex digest")
        hashes[alg] = value or None
    size = raw.get("size")
    if size is not None:
        size = _count(size, path, f"{where}.size")
    extract_to = raw.get("extract_to")
    if extract_to is not None:
        extract_to = _relative(_str(raw, "extract_to", path, where), path, f"{where}.extract_to")
        if not dest.lower().endswith(ARCHIVE_SUFFIXES):
            raise _fail(
                path, where, f"extract_to given but {dest!r} is not an archive {ARCHIVE_SUFFIXES}"
            )
    members = _str_list(raw.get("members", []), path, f"{where}.members")
    nested = tuple(
        _relative(n, path, f"{where}.nested") for n in _str_list(raw.get("nested", []), path,
                                                                 f"{where}.nested")
    )
    if (members or nested) and extract_to is None:
        raise _fail(path, where, "members/nested only apply to archives (set extract_to)")
    common = dict(
        hash_source=_str(raw, "hash_source", path, where), size=size, extract_to=extract_to,
        members=members, nested=nested, note=_str(raw, "note", path, where), **hashes,
    )
    each = raw.get("each")
    if each is None:
        return [FileEntry(url=url, path=_relative(dest, path, f"{where}.path"), **common)]
    if (
        not isinstance(each, dict)
        or len(each) != 1
        or not isinstance(next(iter(each.values())), list)
        or len(next(iter(each.values()))) != 2
    ):
        raise _fail(path, f"{where}.each", "must be {{ var = [first, last] }} (inclusive)")
    var, (first, last) = next(iter(each.items()))
    first, last = _count(first, path, f"{where}.each"), _count(last, path, f"{where}.each")
    token = "{" + var + "}"
    if token not in url or token not in dest:
        raise _fail(path, f"{where}.each", f"url and path must both contain {token}")
    if hashes["sha256"] or hashes["md5"] or size is not None:
        raise _fail(path, f"{where}.each", "a templated entry cannot carry one hash or size")
    return [
        FileEntry(
            url=url.replace(token, str(i)),
            path=_relative(dest.replace(token, str(i)), path, f"{where}.path"),
            **common,
        )
        for i in range(first, last + 1)
    ]


def _parse_check(raw: Any, index: int, path: Path) -> Check:
    where = f"checks[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a table")
    unknown = set(raw) - CHECK_KEYS
    if unknown:
        raise _fail(path, where, f"unknown keys {sorted(unknown)} (allowed: {sorted(CHECK_KEYS)})")
    glob, json_file, key = raw.get("glob"), raw.get("json"), raw.get("key")
    if (glob is None) == (json_file is None):
        raise _fail(path, where, "give exactly one of 'glob' or 'json'")
    if json_file is not None and not isinstance(key, str):
        raise _fail(path, where, "a 'json' check needs 'key' (the list whose length is counted)")
    if ("count" in raw) == ("min_count" in raw):
        raise _fail(path, where, "give exactly one of 'count' or 'min_count'")
    return Check(
        glob=_relative(glob, path, where) if glob is not None else None,
        json=_relative(json_file, path, where) if json_file is not None else None,
        key=key,
        count=_count(raw["count"], path, f"{where}.count") if "count" in raw else None,
        min_count=(
            _count(raw["min_count"], path, f"{where}.min_count") if "min_count" in raw else None
        ),
        note=_str(raw, "note", path, where),
    )


def parse_manifest(raw: dict[str, Any], path: Path, sha256: str = "") -> Manifest:
    """Validate a parsed TOML document (see the module docstring for the schema)."""
    name = _str(raw, "name", path, "top level", required=True)
    if name != path.stem:
        raise _fail(path, "name", f"{name!r} must equal the file name stem {path.stem!r}")
    license_ = _str(raw, "license", path, "top level", required=True)
    files_raw = raw.get("files", [])
    if not isinstance(files_raw, list):
        raise _fail(path, "files", "must be an array of tables ([[files]])")
    files = [entry for i, f in enumerate(files_raw) for entry in _parse_file(f, i, path)]
    citation = _str(raw, "citation", path, "top level")
    if files and not citation.strip():
        raise _fail(path, "citation", "a manifest that downloads files must say how to cite them")
    seen: dict[str, int] = {}
    for i, entry in enumerate(files):
        if entry.path in seen:
            raise _fail(path, f"files[{i}]", f"path {entry.path!r} already used by another entry")
        seen[entry.path] = i
    checks_raw = raw.get("checks", [])
    if not isinstance(checks_raw, list):
        raise _fail(path, "checks", "must be an array of tables ([[checks]])")
    checks = [_parse_check(c, i, path) for i, c in enumerate(checks_raw)]

    splits = raw.get("splits", {})
    if not isinstance(splits, dict) or not all(isinstance(v, dict) for v in splits.values()):
        raise _fail(path, "splits", "must be a table of tables ([splits.NAME])")
    for split, facts in splits.items():
        if "count" in facts:
            _count(facts["count"], path, f"splits.{split}.count")

    regions_raw = raw.get("context_regions", {})
    if not isinstance(regions_raw, dict):
        raise _fail(path, "context_regions", "must be a table: region = [categories]")
    regions = {k: _str_list(v, path, f"context_regions.{k}") for k, v in regions_raw.items()}
    pairs_raw = raw.get("context_pairs", {})
    if not isinstance(pairs_raw, dict):
        raise _fail(path, "context_pairs", "must be a table: class = [regions]")
    pairs = {k: _str_list(v, path, f"context_pairs.{k}") for k, v in pairs_raw.items()}

    loaders = list(_str_list(raw.get("loaders", []), path, "loaders"))
    loader = _str(raw, "loader", path, "top level")
    if loader and loader not in loaders:
        loaders.insert(0, loader)
    return Manifest(
        name=name,
        path=path,
        sha256=sha256,
        license=license_,
        title=_str(raw, "title", path, "top level"),
        citation=citation,
        homepage=_str(raw, "homepage", path, "top level"),
        loaders=tuple(loaders),
        files=tuple(files),
        checks=tuple(checks),
        splits={k: dict(v) for k, v in splits.items()},
        context_regions=regions,
        context_pairs=pairs,
        raw=raw,
    )


def optional_manifest(name: str | Path | None) -> Manifest | None:
    """The manifest a loader was asked for; None or "" means "no manifest" (a user's own data
    without one)."""
    if name is None or str(name) == "":
        return None
    return load_manifest(name)
