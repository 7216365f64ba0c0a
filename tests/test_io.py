"""Map input: real maps read correctly, bad input refused with a one-line InputError."""

import bz2
import gzip
import hashlib
import shutil
import struct

import numpy as np
import pytest

from gpuvalid.errors import InputError
from gpuvalid.io import load_map_input
from gpuvalid.io.emdb import normalise_emdb_id, parse_header_text
from gpuvalid.io.mrc import read_mrc

from .fuzz.corpus import mrc_bytes as _mrc_bytes
from .helpers import write_map


def _raw_mrc(path):
    """Independent MRC reader: the 1024-byte header, the extended header, then float32 data."""
    b = path.read_bytes()
    nc, nr, ns, mode = struct.unpack("<4i", b[:16])
    mapc, mapr, maps = struct.unpack("<3i", b[64:76])
    nsymbt = struct.unpack("<i", b[92:96])[0]
    assert mode == 2
    data = np.frombuffer(b, dtype="<f4", count=nc * nr * ns, offset=1024 + nsymbt).reshape(ns, nr, nc)
    return data, (mapc, mapr, maps)


def test_real_map_5168(data_dir):
    m = load_map_input(data_dir / "emd_5168.map", threshold=10, resolution=6.6)
    assert m.data.shape == (100, 100, 100) and m.data.dtype == np.float32
    assert m.voxel_size == pytest.approx(1.742, abs=1e-4)
    sums = {n.lstrip("./"): h for h, n in (ln.split() for ln in (data_dir / "SHA256SUMS").read_text().splitlines()
                                              if ln.strip())}
    assert m.sha256 == sums["emd_5168.map"]
    raw, order = _raw_mrc(data_dir / "emd_5168.map")
    assert order == (1, 2, 3)
    np.testing.assert_array_equal(m.data, raw)


def test_axis_order_312_and_anisotropy(data_dir):
    path = data_dir / "emd_3001.map"
    with pytest.raises(InputError, match="anisotropic"):
        load_map_input(path)
    m = read_mrc(path)
    raw, order = _raw_mrc(path)
    assert order == (3, 1, 2)  # columns = Z, rows = X, sections = Y
    ns, nr, nc = raw.shape
    assert m.data.shape == (nc, ns, nr)  # (Z, Y, X)
    for s, r, c in [(0, 0, 0), (3, 7, 11), (ns - 1, nr - 1, nc - 1), (10, 20, 30)]:
        assert m.data[c, s, r] == raw[s, r, c]
    assert any("transposed" in n for n in m.notes)
    # explicit handling: resample to the finest spacing
    r = load_map_input(path, resample_anisotropic=True)
    assert r.voxel_size == pytest.approx(min(m.voxel_size), rel=1e-6)
    assert r.data.shape[1] == ns  # Y has the finest spacing: unchanged
    # or force a voxel size
    f = load_map_input(path, voxel_size=0.4)
    assert f.voxel_size == 0.4 and any("replaces" in n for n in f.notes)


def test_small_and_noncubic(data_dir):
    small = load_map_input(data_dir / "emd_3197.map")
    assert small.data.shape == (20, 20, 20) and small.voxel_size == pytest.approx(11.4, abs=1e-4)
    crop = load_map_input(data_dir / "emd_2566_crop_3j6b_chain9.mrc")
    assert crop.data.shape == (47, 52, 35)
    assert crop.origin_A == pytest.approx((356.44, 155.44, 159.46), abs=0.01)


def test_compressed_maps_read_like_the_original(data_dir, tmp_path):
    src = data_dir / "emd_3197.map"
    ref = load_map_input(src).data
    gz = tmp_path / "m.map.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    bz = tmp_path / "m.map.bz2"
    bz.write_bytes(bz2.compress(src.read_bytes()))
    for p in (gz, bz):
        m = load_map_input(p)
        np.testing.assert_array_equal(m.data, ref)
        assert m.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "truncated", "nan", "inf", "zero_voxel",
                                  "tiny", "constant", "image2d"])
def test_bad_input_is_one_line_error(case, tmp_path, data_dir):
    p = tmp_path / "bad.mrc"
    rng = np.random.default_rng(0)
    if case == "missing":
        p = tmp_path / "nope.mrc"
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "garbage":
        p.write_bytes(bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    elif case == "truncated":
        p.write_bytes((data_dir / "emd_5168.map").read_bytes()[:50000])
    elif case in ("nan", "inf"):
        d = rng.normal(size=(16, 16, 16)).astype(np.float32)
        d[3, 4, 5] = np.nan if case == "nan" else np.inf
        p.write_bytes(_mrc_bytes(d))  # packed by hand: mrcfile would warn about the NaN/Inf it is given
    elif case == "zero_voxel":
        write_map(p, rng.normal(size=(16, 16, 16)), voxel_size=0.0)
    elif case == "tiny":
        write_map(p, rng.normal(size=(4, 16, 16)))
    elif case == "constant":
        write_map(p, np.ones((16, 16, 16)))
    elif case == "image2d":
        write_map(p, rng.normal(size=(16, 16)))
    with pytest.raises(InputError) as exc:
        load_map_input(p)
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 300, msg


def test_bad_options():
    for kw in ({"voxel_size": 0}, {"voxel_size": -1.0}, {"voxel_size": float("nan")}, {"resolution": 0},
               {"threshold": float("inf")}):
        with pytest.raises(InputError):
            load_map_input("does-not-matter.map", **kw)


HEADER_V3 = """<?xml version="1.0" encoding="UTF-8"?>
<emd emdb_id="EMD-5168" version="3.0.0.0">
  <structure_determination_list><structure_determination>
    <method>helical</method>
    <helical_processing><final_reconstruction>
      <resolution res_type="BY AUTHOR" units="Å">6.6</resolution>
    </final_reconstruction></helical_processing>
  </structure_determination></structure_determination_list>
  <map format="CCP4" size_kbytes="3907">
    <file>emd_5168.map.gz</file>
    <contour_list>
      <contour primary="false"><level>3.0</level></contour>
      <contour primary="true"><level>10.0</level><source>AUTHOR</source></contour>
    </contour_list>
    <pixel_spacing><x units="Å">1.742</x><y units="Å">1.742</y><z units="Å">1.742</z></pixel_spacing>
  </map>
</emd>"""


def test_emdb_header_v3(tmp_path, data_dir):
    h = parse_header_text(HEADER_V3)
    assert (h.emdb_id, h.contour, h.resolution, h.method, h.map_file) == \
        ("EMD-5168", 10.0, 6.6, "helical", "emd_5168.map.gz")
    assert h.voxel_size == (1.742, 1.742, 1.742)
    xml = tmp_path / "emd-5168-v30.xml"
    xml.write_text(HEADER_V3, encoding="utf-8")
    m = load_map_input(data_dir / "emd_5168.map", header=xml)
    assert (m.threshold, m.resolution) == (10.0, 6.6)
    assert m.sources["threshold"].startswith("EMDB header")
    # the command line wins over the header
    m2 = load_map_input(data_dir / "emd_5168.map", header=xml, threshold=5.0)
    assert m2.threshold == 5.0
    bad = tmp_path / "bad.xml"
    bad.write_text("<emd><map>")
    with pytest.raises(InputError, match="not valid XML"):
        load_map_input(data_dir / "emd_5168.map", header=bad)


def test_emdb_ids():
    assert normalise_emdb_id("EMD-1234") == "EMD-1234"
    assert normalise_emdb_id("emd_1234") == "EMD-1234"
    assert normalise_emdb_id("1234") == "EMD-1234"
    assert normalise_emdb_id("emd-12345") == "EMD-12345"
    assert normalise_emdb_id("0042") == "EMD-0042"
    assert normalise_emdb_id("123") is None and normalise_emdb_id("map.mrc") is None


def test_volume_stack_uses_first_volume(tmp_path):
    import mrcfile

    rng = np.random.default_rng(5)
    stack = rng.normal(size=(3, 12, 14, 16)).astype(np.float32)
    p = tmp_path / "stack.mrcs"
    with mrcfile.new(str(p)) as m:
        m.set_data(stack)
        m.voxel_size = 2.0
    inp = load_map_input(p)
    np.testing.assert_array_equal(inp.data, stack[0])
    assert any("stack of 3 volumes" in n for n in inp.notes)


# ---- the validation layer in front of the reader: header lies, modes, compression, values, XML ----

from .fuzz.corpus import _gzip_stream, _xml, base_map, mrc_bytes  # noqa: E402


def _write(tmp_path, content: bytes, name="m.mrc"):
    p = tmp_path / name
    p.write_bytes(content)
    return p


@pytest.mark.parametrize("mode,dtype", [(0, "i1"), (1, "i2"), (2, "f4"), (6, "u2"), (12, "f2")])
@pytest.mark.parametrize("order", ["<", ">"])
def test_every_real_mode_and_byte_order(tmp_path, mode, dtype, order):
    rng = np.random.default_rng(mode)
    vals = rng.integers(1, 100, size=(8, 9, 10)).astype(dtype)  # exact in every mode
    m = read_mrc(_write(tmp_path, mrc_bytes(vals, mode, order=order)))
    np.testing.assert_array_equal(m.data, vals.astype(np.float32))
    assert m.voxel_size == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("mode", [3, 4, 101, -1, 5, 99])
def test_unusable_modes_refused(tmp_path, mode):
    with pytest.raises(InputError, match="mode"):
        read_mrc(_write(tmp_path, mrc_bytes(base_map(16), mode, payload=bytes(16 ** 3 * 8))))


@pytest.mark.parametrize("nsymbt", [2 ** 31 - 1, 10 ** 9, -4])
def test_extended_header_longer_than_file_refused_before_reading(tmp_path, nsymbt):
    with pytest.raises(InputError, match="nsymbt"):
        read_mrc(_write(tmp_path, mrc_bytes(base_map(16), nsymbt=nsymbt, ext=b"")))


def test_consistent_extended_header_is_skipped(tmp_path):
    v = base_map(16)
    np.testing.assert_array_equal(read_mrc(_write(tmp_path, mrc_bytes(v, nsymbt=3000))).data, v)


def test_sizes_against_the_file(tmp_path):
    v = base_map(16)
    full = mrc_bytes(v)
    with pytest.raises(InputError, match=f"need {len(full):,} bytes, the file has {len(full) - 1:,}"):
        read_mrc(_write(tmp_path, full[:-1]))
    with pytest.raises(InputError, match="header box"):
        read_mrc(_write(tmp_path, mrc_bytes(shape=(2 ** 20, 16, 16), payload=b"")))
    with pytest.raises(InputError, match="shorter than the 1024-byte header"):
        read_mrc(_write(tmp_path, full[:500]))
    m = read_mrc(_write(tmp_path, full + b"\0" * 10))
    assert any("10 bytes after" in n for n in m.notes)


def test_max_voxels(tmp_path):
    p = _write(tmp_path, mrc_bytes(base_map(16)))
    with pytest.raises(InputError, match="--max-voxels"):
        read_mrc(p, max_voxels=16 ** 3 - 1)
    assert read_mrc(p, max_voxels=16 ** 3).data.shape == (16, 16, 16)
    with pytest.raises(InputError, match="voxels exceeds"):  # default cap, from the header alone
        read_mrc(_write(tmp_path, mrc_bytes(shape=(2048, 2048, 2048), payload=b"")))


def test_stacks(tmp_path):
    v = base_map(16)
    two = np.concatenate([v, -v])
    with pytest.raises(InputError, match="mz = 0"):
        read_mrc(_write(tmp_path, mrc_bytes(two, ispg=401, mxyz=(16, 16, 0))))
    m = read_mrc(_write(tmp_path, mrc_bytes(two, ispg=401, mxyz=(16, 16, 16))))
    np.testing.assert_array_equal(m.data, v)
    assert any("stack of 2 volumes" in n for n in m.notes)
    imgs = np.random.default_rng(1).normal(size=(40, 16, 16)).astype(np.float32)
    m = read_mrc(_write(tmp_path, mrc_bytes(imgs, ispg=0, mxyz=(16, 16, 1))))
    assert m.data.shape == (40, 16, 16) and any("image stack of 40 2-D images" in n for n in m.notes)


def test_compressed_stream_bounded_by_the_header(tmp_path):
    v = base_map(16)
    # 64 MiB of zeros after a 16³ map: only the declared bytes are inflated
    m = read_mrc(_write(tmp_path, _gzip_stream(mrc_bytes(v), 1 << 26), "b.mrc.gz"))
    np.testing.assert_array_equal(m.data, v)
    assert any("after the declared map" in n for n in m.notes)
    with pytest.raises(InputError, match="stream holds"):
        read_mrc(_write(tmp_path, gzip.compress(mrc_bytes(v)[:5000]), "t.mrc.gz"))
    with pytest.raises(InputError, match="cannot read"):
        read_mrc(_write(tmp_path, gzip.compress(mrc_bytes(v))[:30] + b"\x07" * 3000, "c.mrc.gz"))


@pytest.mark.parametrize("scale,match", [(3e38, "overflow"), (1e20, "overflow"), (1e-30, "too small")])
def test_values_out_of_float32_range(tmp_path, scale, match):
    with pytest.raises(InputError, match=match):
        read_mrc(_write(tmp_path, mrc_bytes(base_map(16) * np.float32(scale))))


def test_non_finite_origin_not_reported(tmp_path):
    m = read_mrc(_write(tmp_path, mrc_bytes(base_map(16), origin=(float("nan"), 1.0, float("inf")))))
    assert m.origin_A is None and any("origin" in n for n in m.notes)


def test_absurd_voxel_size_and_resolution(tmp_path):
    p = _write(tmp_path, mrc_bytes(base_map(16), cell=(16e30, 16e30, 16e30)))
    with pytest.raises(InputError, match="plausible range"):
        load_map_input(p)
    assert load_map_input(p, voxel_size=2.0).voxel_size == 2.0
    good = _write(tmp_path, mrc_bytes(base_map(16)), "g.mrc")
    for kw in ({"resolution": 1e-30}, {"resolution": 1e30}, {"voxel_size": 1e30}, {"voxel_size": 1e-30}):
        with pytest.raises(InputError, match="plausible range"):
            load_map_input(good, **kw)


@pytest.mark.parametrize("kw,match", [({"contour": "nan"}, "not a finite"), ({"contour": "inf"}, "not a finite"),
                                      ({"contour": "1e400"}, "not a finite"), ({"contour": "x1"}, "not a number"),
                                      ({"resolution": "NaN"}, "not a finite"),
                                      ({"resolution": "1e-30"}, "plausible range"),
                                      ({"spacing": ("1e30",) * 3}, "plausible range"),
                                      ({"units": "furlong"}, "unknown units")])
def test_header_xml_values_refused(tmp_path, kw, match):
    xml = tmp_path / "h.xml"
    xml.write_bytes(_xml(**kw))
    with pytest.raises(InputError, match=match) as exc:
        load_map_input(_write(tmp_path, mrc_bytes(base_map(16))), header=xml)
    assert "\n" not in str(exc.value)


def test_header_xml_units_nm_converted(tmp_path):
    xml = tmp_path / "h.xml"
    xml.write_bytes(_xml(spacing=("0.2",) * 3, units="nm", resolution="0.65", res_units="nm"))
    m = load_map_input(_write(tmp_path, mrc_bytes(base_map(16))), header=xml)
    assert m.voxel_size == pytest.approx(2.0) and m.resolution == pytest.approx(6.5)
    assert sum("converted" in n for n in m.notes) == 4


@pytest.mark.parametrize("units", ["\u00c5", "\u212b", "\u00e5", "angstrom", "A", ""])
def test_header_xml_angstrom_spellings(tmp_path, units):
    """Both Unicode Å characters (the letter U+00C5 and the ANGSTROM SIGN U+212B) and plain spellings mean Å."""
    xml = tmp_path / "h.xml"
    xml.write_bytes(_xml(spacing=("1.5",) * 3, units=units))
    m = load_map_input(_write(tmp_path, mrc_bytes(base_map(16))), header=xml)
    assert m.voxel_size == pytest.approx(1.5) and not any("converted" in n for n in m.notes)


def test_header_xml_entities_refused(tmp_path):
    xml = tmp_path / "h.xml"
    xml.write_bytes(_xml(prolog='<!DOCTYPE emd [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'))
    with pytest.raises(InputError, match="ENTITY"):
        load_map_input(_write(tmp_path, mrc_bytes(base_map(16))), header=xml)
