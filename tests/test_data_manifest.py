"""The shipped dataset manifests load, validate, and say what the issue requires; broken
manifests fail with an error naming the file and the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bench.data.manifest import ManifestError, list_manifests, load_manifest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = ["coco2017-val", "voc2007-test", "salicon", "mit1003", "osie", "cat2000"]


def test_every_required_manifest_is_shipped_and_valid():
    names = list_manifests()
    for name in REAL:
        assert name in names
    for name in names:
        load_manifest(name)  # raises on any schema problem


@pytest.mark.parametrize("name", REAL)
def test_real_manifests_are_complete(name):
    m = load_manifest(name)
    assert m.license.strip() and m.citation.strip() and m.homepage.startswith("http")
    assert m.files and m.checks and m.splits and m.loaders
    for entry in m.files:
        assert entry.url.startswith(("http://", "https://"))
        # Every file is either pinned by a hash or says why there is none.
        assert entry.known_hash or "none published" in entry.hash_source
        if entry.known_hash:
            assert entry.hash_source
    for split, facts in m.splits.items():
        assert facts["count"] > 0, split


def test_known_archive_facts():
    coco = load_manifest("coco2017-val")
    by_path = {f.path: f for f in coco.files}
    val = by_path["val2017.zip"]
    assert val.url == "http://images.cocodataset.org/zips/val2017.zip"
    assert val.size == 815585330 and val.md5 == "442b8da7639aecaf257c1dceb8ba8c80"
    pan = by_path["panoptic_annotations_trainval2017.zip"]
    assert pan.nested == ("annotations/panoptic_val2017.zip",)
    voc = load_manifest("voc2007-test").files[0]
    assert voc.md5 == "b6e924de25625d8de591ea690078ad9f" and voc.size == 451020800
    osie = load_manifest("osie")
    stimuli = [f for f in osie.files if f.path.startswith("stimuli/")]
    assert len(stimuli) == 700
    assert stimuli[0].path == "stimuli/1001.jpg" and stimuli[-1].url.endswith("/1700.jpg")


def test_osie_hash_matches_the_real_file():
    mat = SHARED / "osie_dev" / "fixations.mat"
    if not mat.is_file():
        pytest.skip(f"shared sample data not found at {mat}")
    entry = next(f for f in load_manifest("osie").files if f.path == "fixations.mat")
    data = mat.read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry.sha256
    assert hashlib.md5(data).hexdigest() == entry.md5
    assert len(data) == entry.size


def test_coco_context_pairs_use_real_panoptic_categories():
    cats = json.loads((FIXTURES / "coco_panoptic" / "panoptic_coco_categories.json").read_text())
    things = {c["name"] for c in cats if c["isthing"]}
    stuff = {c["name"] for c in cats if not c["isthing"]}
    m = load_manifest("coco2017-val")
    for label in m.context_pairs:
        assert label in things, label
        for region, names in m.regions_for(label).items():
            assert set(names) <= stuff, (label, region, names)
    # The pairs the issue names.
    def covers(label, names):
        return set(names) <= {n for ns in m.regions_for(label).values() for n in ns}

    assert covers("boat", ["sea", "river", "water-other"])
    assert covers("airplane", ["sky-other-merged"])
    assert covers("train", ["railroad"])
    assert covers("skis", ["snow"]) and covers("snowboard", ["snow"])
    assert covers("surfboard", ["sea"])
    assert m.regions_for("boat") == {"water": ("sea", "river", "water-other")}
    assert m.regions_for("person") == {}


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return path


GOOD_FILE = '''
name = "toy"
license = "x"
citation = "y"
[[files]]
url = "https://example.org/a.zip"
sha256 = "{h}"
extract_to = "."
'''.replace("{h}", "0" * 64)


@pytest.mark.parametrize(
    "body, message",
    [
        (GOOD_FILE.replace('name = "toy"', 'name = "other"'), "must equal the file name stem"),
        (GOOD_FILE.replace('license = "x"\n', ""), "missing required key 'license'"),
        (GOOD_FILE.replace('citation = "y"\n', ""), "say how to cite"),
        (GOOD_FILE.replace("0" * 64, "abc"), "is not a sha256 hex digest"),
        (GOOD_FILE.replace("sha256 =", "sha265 ="), "unknown keys ['sha265']"),
        (GOOD_FILE.replace("https://example.org", "file:///etc"), "must start with http"),
        (GOOD_FILE.replace('extract_to = "."', 'extract_to = "../up"'), "relative path inside"),
        (GOOD_FILE.replace("a.zip", "a.bin"), "is not an archive"),
        (GOOD_FILE + '[[checks]]\nglob = "*.jpg"\n', "exactly one of 'count' or 'min_count'"),
        (GOOD_FILE + '[[checks]]\njson = "a.json"\ncount = 1\n', "needs 'key'"),
        (GOOD_FILE + '[context_pairs]\nboat = "water"\n', "must be a list of strings"),
        ("name = [", "not valid TOML"),
    ],
)
def test_broken_manifest_errors_name_the_file_and_the_problem(tmp_path, body, message):
    path = _write(tmp_path, "toy", body)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_template_errors(tmp_path):
    body = '''
name = "toy"
license = "x"
citation = "y"
[[files]]
url = "https://example.org/{n}.jpg"
path = "img.jpg"
each = { n = [1, 3] }
'''
    with pytest.raises(ManifestError, match="must both contain"):
        load_manifest(_write(tmp_path, "toy", body))


def test_unknown_manifest_name_lists_the_shipped_ones():
    with pytest.raises(ManifestError, match="coco2017-val"):
        load_manifest("coco2071-val")
