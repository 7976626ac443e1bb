"""Map files in every accepted form read back as the maps that were saved: .npy, .npz, .pt
(weights_only), 8- and 16-bit grayscale .png, shapes H x W, 1 x H x W, H x W x 1, batch files
N x H x W and N x 1 x H x W with an index beside them or inside; and every file that gives no
map is reported with its reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.map_files import MapEntry, MapFileError, MapReader, read_file, scan_folder

RNG = np.random.default_rng(0)


def _map(h=12, w=10) -> np.ndarray:
    return RNG.random((h, w)).astype(np.float32)


def _read_all(folder):
    entries, unused = scan_folder(folder)
    reader = MapReader()
    return {k: reader.read(e) for k, e in entries.items()}, unused


def test_one_map_per_file_in_every_format(tmp_path):
    m = _map()
    np.save(tmp_path / "img1__boat.npy", m)
    np.save(tmp_path / "img2__boat.npy", m[None])  # 1 x H x W, as Quantus and pytorch-grad-cam give
    np.save(tmp_path / "img3__boat.npy", m[..., None])  # H x W x 1
    np.savez(tmp_path / "img4__boat.npz", m)
    np.savez(tmp_path / "img5__boat.npz", map=m, other=np.zeros(3))
    torch.save(torch.from_numpy(m), tmp_path / "img6__boat.pt")
    torch.save({"map": torch.from_numpy(m[None])}, tmp_path / "img7__boat.pth")
    maps, unused = _read_all(tmp_path)
    assert unused == []
    assert sorted(maps) == [(f"img{i}", "boat") for i in range(1, 8)]
    for key, got in maps.items():
        assert got.dtype == np.float32 and got.shape == m.shape, key
        np.testing.assert_array_equal(got, m, err_msg=str(key))


def test_png_8_and_16_bit_read_as_values_in_0_1(tmp_path):
    eight = (RNG.random((9, 7)) * 255).round().astype(np.uint8)
    sixteen = (RNG.random((9, 7)) * 65535).round().astype(np.uint16)
    Image.fromarray(eight).save(tmp_path / "a__cat.png")
    Image.fromarray(sixteen).save(tmp_path / "b__cat.png")
    with Image.open(tmp_path / "b__cat.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    maps, unused = _read_all(tmp_path)
    assert unused == []
    np.testing.assert_array_equal(maps[("a", "cat")], eight.astype(np.float32) / 255)
    np.testing.assert_array_equal(maps[("b", "cat")], sixteen.astype(np.float32) / 65535)


def test_colour_png_is_refused_with_the_reason(tmp_path):
    Image.fromarray((RNG.random((6, 6, 3)) * 255).astype(np.uint8)).save(tmp_path / "a__cat.png")
    with pytest.raises(MapFileError, match="RGB PNG holds colours"):
        read_file(tmp_path / "a__cat.png")


def test_batch_files_with_an_index_beside_them(tmp_path):
    batch = RNG.random((3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "part1.npy", batch)
    (tmp_path / "part1.index.csv").write_text("image_id,target\nimg1,boat\nimg2,boat\nimg2,car\n")
    np.save(tmp_path / "part2.npy", batch[:, None])  # N x 1 x H x W
    (tmp_path / "part2.index.json").write_text(json.dumps([{"image_id": "img9", "target": "dog", "row": 2}, ["img8", "dog"]]))
    maps, unused = _read_all(tmp_path)
    assert unused == []
    np.testing.assert_array_equal(maps[("img2", "car")], batch[2])
    np.testing.assert_array_equal(maps[("img1", "boat")], batch[0])
    np.testing.assert_array_equal(maps[("img9", "dog")], batch[2])
    np.testing.assert_array_equal(maps[("img8", "dog")], batch[1])


def test_self_describing_batches(tmp_path):
    batch = RNG.random((2, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "quantus.npz", maps=batch[:, None], image_ids=np.array(["x", "y"]), targets=np.array(["boat", "car"]))
    torch.save({"maps": torch.from_numpy(batch), "image_ids": ["u", "v"], "targets": ["bird", "boat"]}, tmp_path / "cams.pt")
    maps, unused = _read_all(tmp_path)
    assert unused == []
    np.testing.assert_array_equal(maps[("y", "car")], batch[1])
    np.testing.assert_array_equal(maps[("u", "bird")], batch[0])


def test_every_file_that_gives_no_map_is_reported(tmp_path):
    m = _map()
    np.save(tmp_path / "img1__boat.npy", m)
    np.savez(tmp_path / "img1__boat.npz", m)  # a second map for the same pair
    (tmp_path / "notes.txt").write_text("hello")
    np.save(tmp_path / "orphan_batch.npy", np.stack([m, m]))  # no index
    (tmp_path / "lonely.index.csv").write_text("image_id,target\nx,y\n")
    (tmp_path / "bad.index.csv").write_text("a,b\n1,2\n")
    np.save(tmp_path / "bad.npy", np.stack([m, m]))
    entries, unused = scan_folder(tmp_path)
    assert set(entries) == {("img1", "boat")}
    reasons = {u.path.name: u.reason for u in unused}
    assert set(reasons) == {"img1__boat.npz", "notes.txt", "orphan_batch.npy", "lonely.index.csv", "bad.npy"}
    assert "second map" in reasons["img1__boat.npz"]
    assert "not a map file format" in reasons["notes.txt"]
    assert "index" in reasons["orphan_batch.npy"]
    assert "without its batch file" in reasons["lonely.index.csv"]
    assert "image_id,target" in reasons["bad.npy"]


def test_shape_and_row_errors_name_the_file(tmp_path):
    np.save(tmp_path / "img1__boat.npy", RNG.random((2, 4, 4)))
    entries, _ = scan_folder(tmp_path)
    with pytest.raises(MapFileError, match=r"img1__boat.npy: expected a numeric H x W map, got shape .* needs an index"):
        MapReader().read(entries[("img1", "boat")])
    np.save(tmp_path / "b.npy", RNG.random((2, 4, 4)))
    with pytest.raises(MapFileError, match="row 5, the file has 2 maps"):
        MapReader().read(MapEntry("x", "y", tmp_path / "b.npy", 5))
    (tmp_path / "c__d.npy").write_bytes(b"not numpy")
    with pytest.raises(MapFileError, match="c__d.npy: not a readable .npy"):
        read_file(tmp_path / "c__d.npy")


def test_pt_files_are_read_without_running_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"map": Evil()}, tmp_path / "x__y.pt")
    with pytest.raises(MapFileError, match="weights_only=True"):
        read_file(tmp_path / "x__y.pt")


def test_encoded_names_decode(tmp_path):
    from bench.maps_io import safe_name

    np.save(tmp_path / f"{safe_name('COCO:42')}__{safe_name('traffic light')}.npy", _map())
    entries, _ = scan_folder(tmp_path)
    assert ("COCO:42", "traffic light") in entries
