"""Generator of a corpus of malformed and edge-case inputs for ``gpuvalid run``.

Each :class:`Case` is a map file (or none), an optional EMDB header XML, command-line arguments and
what must happen: ``"error"`` (a one-line ``gpuvalid: error:`` and a non-zero exit), ``"report"``
(exit 0, ``report.md`` and ``results.json``) or ``"any"`` (either, but cleanly).  ``check`` is an
extra assertion on the outcome; ``declared_bytes`` is the float32 size of the map the header claims
(the memory bound of the runner); ``fast`` marks the subset run by the default test suite.

MRC files are packed here with ``struct`` from the MRC2014 layout (not with mrcfile or gpuvalid), so a
header can say anything.  Usage: ``python -m tests.fuzz.corpus OUTDIR`` writes the corpus and lists it.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

VOXEL = 2.0     # Å, the base map's voxel size
BOX = 32        # the base map's edge (voxels)
THRESHOLD = 0.3
RESOLUTION = 6.0

MODE_DTYPES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}


@dataclass
class Case:
    name: str
    args: list[str]                 # after "run"; "{map}", "{out}", "{xml}", "{dir}" are substituted
    expect: str                     # "error", "report" or "any"
    declared_bytes: int = 0
    fast: bool = False
    slow: bool = False              # only with -m slow (large allocations)
    check: Callable | None = None   # check(outcome) -> None, raises AssertionError
    cwd_default_out: bool = False   # run in a fresh folder without --out
    error_contains: str | None = None
    files: dict = field(default_factory=dict)  # extra files: relative name -> bytes


def base_map(box: int = BOX, seed: int = 0) -> np.ndarray:
    """Two Gaussian blobs on weak noise, float32 [z, y, x]: a small map with a clear molecule."""
    z, y, x = np.mgrid[:box, :box, :box].astype(np.float32)
    c = box / 2
    v = np.exp(-((z - c) ** 2 + (y - c + 2) ** 2 + (x - c + 1) ** 2) / (2 * (box / 8) ** 2))
    v += 0.6 * np.exp(-((z - c + 6) ** 2 + (y - c - 4) ** 2 + (x - c + 4) ** 2) / (2 * (box / 13) ** 2))
    v += np.random.default_rng(seed).normal(0, 0.02, v.shape)
    return v.astype(np.float32)


def mrc_bytes(data: np.ndarray | None = None, mode: int = 2, *, shape=None, order: str = "<", cell=None,
              mxyz=None, axes=(1, 2, 3), ispg: int = 1, nsymbt: int = 0, ext: bytes | None = None,
              origin=(0.0, 0.0, 0.0), nstart=(0, 0, 0), machst: bytes | None = None, map_id: bytes = b"MAP ",
              payload: bytes | None = None) -> bytes:
    """An MRC2014 file: 1024-byte header (every field settable, true or not), extended header, data."""
    if shape is None:
        shape = data.shape  # (sections, rows, columns)
    ns, nr, nc = shape
    mx = mxyz if mxyz is not None else (nc, nr, ns)
    cell = cell if cell is not None else (mx[0] * VOXEL, mx[1] * VOXEL, mx[2] * VOXEL)
    if payload is None:
        if data is None:
            payload = b""
        else:
            dt = np.dtype(MODE_DTYPES.get(mode, "f4")).newbyteorder(order)
            payload = np.ascontiguousarray(data).astype(dt).tobytes()
    f = order + "i"
    h = bytearray(1024)
    struct.pack_into(order + "4i", h, 0, nc, nr, ns, mode)
    struct.pack_into(order + "3i", h, 16, *nstart)
    struct.pack_into(order + "3i", h, 28, *mx)
    struct.pack_into(order + "3f", h, 40, *cell)
    struct.pack_into(order + "3f", h, 52, 90.0, 90.0, 90.0)
    struct.pack_into(order + "3i", h, 64, *axes)
    if data is not None and data.size and np.issubdtype(data.dtype, np.floating) and np.isfinite(data).any():
        with np.errstate(all="ignore"):
            struct.pack_into(order + "3f", h, 76, *(float(np.float32(v)) for v in
                                                    (np.nanmin(data), np.nanmax(data), np.nanmean(data))))
    struct.pack_into(f, h, 88, ispg)
    struct.pack_into(f, h, 92, nsymbt)
    struct.pack_into(order + "3f", h, 196, *origin)
    h[208:212] = map_id
    h[212:216] = machst if machst is not None else (b"DA\x00\x00" if order == "<" else b"\x11\x11\x00\x00")
    ext = ext if ext is not None else bytes(max(0, min(nsymbt, 1 << 20)))
    return bytes(h) + ext + payload


def _xml(contour="0.3", resolution="6.0", spacing=("2.0", "2.0", "2.0"), units="Å", res_units="Å",
         prolog: str = "") -> bytes:
    sx, sy, sz = spacing
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}<emd emdb_id="EMD-0001" version="3.0.0.0">'
            "<structure_determination_list><structure_determination><method>singleParticle</method>"
            "<singleparticle_processing><final_reconstruction>"
            f'<resolution res_type="BY AUTHOR" units="{res_units}">{resolution}</resolution>'
            "</final_reconstruction></singleparticle_processing></structure_determination>"
            '</structure_determination_list><map format="CCP4"><file>m.map</file><contour_list>'
            f'<contour primary="true"><level>{contour}</level></contour></contour_list>'
            f'<pixel_spacing><x units="{units}">{sx}</x><y units="{units}">{sy}</y><z units="{units}">{sz}</z>'
            "</pixel_spacing></map></emd>").encode("utf-8")


# ---- checks on the outcome (a dict: rc, stdout, stderr, out (Path), results (dict or None), report) ----

def _note(text: str):
    def check(o):
        notes = " ".join(o["results"]["input"]["notes"])
        assert text in notes, f"note {text!r} missing in {notes!r}"
    return check


def _voxel(expected: float):
    def check(o):
        assert abs(o["results"]["input"]["voxel_size_A"] - expected) < 1e-6 * expected
    return check


def _resolution(expected: float):
    def check(o):
        assert abs(o["results"]["input"]["resolution_A"] - expected) < 1e-6 * expected
    return check


def _nothing_evaluable(o):
    assert o["results"]["score"]["evaluable"] == 0, o["results"]["score"]


def _origin_not_reported(o):
    assert o["results"]["input"]["origin_A"] is None
    assert "not reported" in o["report"]


def _same_as_base(o):
    assert o["results"]["input"]["box_zyx"] == [BOX, BOX, BOX]


RUN = ["{map}", "--device", "cpu", "--no-figures", "--out", "{out}"]
RUN_TR = RUN + ["-t", str(THRESHOLD), "-r", str(RESOLUTION)]


def build(root: str | Path, subset: str = "default") -> list[Case]:
    """Write the corpus files under ``root`` and return the cases (``{map}`` = root/NAME/…).

    ``subset``: ``"fast"`` (the cases marked fast), ``"default"`` (all but the slow ones) or ``"all"``.
    Map contents may be given as callables so unselected expensive cases cost nothing.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    base = base_map()
    decl = base.size * 4

    def add(name: str, content: bytes | None, args=None, expect="report", fname="map.mrc", xml: bytes | None = None,
            **kw) -> Case:
        d = root / name
        fast, slow = kw.get("fast", False), kw.get("slow", False)
        selected = subset == "all" or (subset == "default" and not slow) or (subset == "fast" and fast)
        if not selected:
            return None
        d.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content = content()
        if content is not None:
            (d / fname).write_bytes(content)
        if xml is not None:
            (d / "header.xml").write_bytes(xml)
        a = list(RUN_TR if args is None else args)
        a = [x.replace("{map}", str(d / fname)).replace("{xml}", str(d / "header.xml")).replace("{dir}", str(d))
             for x in a]
        c = Case(name, a, expect, **{"declared_bytes": decl, **kw})
        for rel, b in c.files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b)
        cases.append(c)
        return c

    good = mrc_bytes(base)
    # --- valid maps in every real mode and byte order --------------------------------------------
    add("valid_float32", good, fast=True, check=_same_as_base)
    scaled = {0: 100, 1: 10000, 6: 20000, 12: 1}
    for mode, k in scaled.items():
        add(f"mode_{mode}", mrc_bytes(base * k + (1000 if mode == 6 else 0), mode),
            args=RUN + ["-r", str(RESOLUTION), "-t", str(THRESHOLD * k + (1000 if mode == 6 else 0))],
            check=_same_as_base)
    add("big_endian", mrc_bytes(base, order=">"), check=_same_as_base)
    add("bad_machine_stamp", mrc_bytes(base, machst=b"\x00\x00\x00\x00"))
    add("no_map_id", mrc_bytes(base, map_id=b"XXXX"), check=_note("no 'MAP ' identifier"))
    for mode in (3, 4, 101, -1, 5, 7, 99, 2 ** 31 - 1):
        add(f"mode_invalid_{mode}", mrc_bytes(base, mode=mode, payload=base.tobytes() * 2), expect="error",
            fast=mode == 4)
    # --- truncations ------------------------------------------------------------------------------
    add("empty", b"", expect="error", fast=True)
    add("one_byte", b"\x00", expect="error")
    add("header_only", good[:1024], expect="error")
    add("cut_500", good[:500], expect="error")
    add("cut_mid_data", good[:1024 + len(good[1024:]) // 2], expect="error")
    add("cut_one_byte", good[:-1], expect="error")
    add("trailing_bytes", good + b"\x00" * 100, check=_note("bytes after the declared data"))
    # --- header lies ------------------------------------------------------------------------------
    for nm, shape in [("nx_zero", (BOX, BOX, 0)), ("nx_negative", (BOX, BOX, -5)),
                      ("nz_huge", (2 ** 30, BOX, BOX)), ("all_huge", (2 ** 20, 2 ** 20, 2 ** 20)),
                      ("int32_overflow", (2 ** 16, 2 ** 16, 2 ** 16))]:
        add(f"box_{nm}", mrc_bytes(shape=shape, payload=base.tobytes()), expect="error", fast=nm == "nz_huge",
            declared_bytes=max(0, int(np.prod(shape, dtype=object))) * 4)
    add("box_2d", mrc_bytes(base[:1]), expect="error")
    add("box_tiny", mrc_bytes(base[:4]), expect="error")
    for n in (2 ** 31 - 1, 10 ** 9, len(good) - 1023, -4):
        add(f"nsymbt_{n}", mrc_bytes(base, nsymbt=n, ext=b""), expect="error", fast=n == 2 ** 31 - 1)
    add("nsymbt_consistent", mrc_bytes(base, nsymbt=4000), check=_same_as_base)
    st = np.stack([base, base[::-1]])
    add("volume_stack", mrc_bytes(st.reshape(2 * BOX, BOX, BOX), ispg=401, mxyz=(BOX, BOX, BOX)),
        check=_note("stack of 2 volumes"))
    add("volume_stack_mz0", mrc_bytes(st.reshape(2 * BOX, BOX, BOX), ispg=401, mxyz=(BOX, BOX, 0),
                                      cell=(BOX * VOXEL,) * 3), expect="error", fast=True)
    add("volume_stack_mz_not_divisor", mrc_bytes(st.reshape(2 * BOX, BOX, BOX), ispg=401, mxyz=(BOX, BOX, 27)),
        expect="error")
    add("volume_mz0", mrc_bytes(base, mxyz=(BOX, BOX, 0), cell=(BOX * VOXEL,) * 3), expect="error")
    add("volume_mz0_voxel_given", mrc_bytes(base, mxyz=(BOX, BOX, 0), cell=(BOX * VOXEL,) * 3),
        args=RUN_TR + ["--voxel-size", str(VOXEL)], check=_voxel(VOXEL))
    imgs = np.random.default_rng(3).normal(size=(40, BOX, BOX)).astype(np.float32)
    add("image_stack", mrc_bytes(imgs, ispg=0, mxyz=(BOX, BOX, 1), cell=(BOX * VOXEL, BOX * VOXEL, VOXEL)),
        args=RUN + ["-r", "6"], check=_note("image stack of 40 2-D images"), fast=True)
    add("ispg0_volume", mrc_bytes(base, ispg=0), check=_note("read as a 3-D volume"))
    add("axes_invalid", mrc_bytes(base, axes=(0, 0, 0)), check=_note("invalid axis order"))
    add("axes_312", mrc_bytes(base, axes=(3, 1, 2)), check=_note("transposed"))
    add("cell_zero", mrc_bytes(base, cell=(0.0, 0.0, 0.0)), expect="error")
    add("cell_negative", mrc_bytes(base, cell=(-64.0, -64.0, -64.0)), expect="error")
    add("cell_nan", mrc_bytes(base, cell=(float("nan"),) * 3), expect="error")
    add("cell_huge", mrc_bytes(base, cell=(1e30 * BOX,) * 3), expect="error", error_contains="voxel size",
        fast=True)
    add("cell_tiny", mrc_bytes(base, cell=(1e-30,) * 3), expect="error")
    add("cell_anisotropic", mrc_bytes(base, cell=(64.0, 64.0, 96.0)), expect="error",
        error_contains="anisotropic")
    add("cell_anisotropic_absurd", mrc_bytes(base, cell=(64.0, 64.0, 64e5)), args=RUN_TR + ["--resample-anisotropic"],
        expect="error")
    add("origin_nan", mrc_bytes(base, origin=(float("nan"), float("inf"), float("-inf"))),
        args=RUN + ["-t", "0.3"], check=_origin_not_reported, fast=True)
    add("origin_huge", mrc_bytes(base, origin=(3e38, -3e38, 1e30)))
    add("nstart_huge", mrc_bytes(base, nstart=(2 ** 31 - 1, -(2 ** 31), 5)))
    # --- values -----------------------------------------------------------------------------------
    for nm, fn in [("nan", lambda v: v.__setitem__((3, 4, 5), np.nan)),
                   ("inf", lambda v: v.__setitem__((3, 4, 5), np.inf)),
                   ("all_nan", lambda v: v.fill(np.nan)),
                   ("huge_3e38", lambda v: v.__setitem__(slice(None), v * 3e38)),
                   ("big_1e20", lambda v: v.__setitem__(slice(None), v * 1e20)),
                   ("tiny_1e-30", lambda v: v.__setitem__(slice(None), v * 1e-30)),
                   ("constant", lambda v: v.fill(1.0)),
                   ("zeros", lambda v: v.fill(0.0))]:
        v = base.copy()
        fn(v)
        add(f"values_{nm}", mrc_bytes(v), expect="error", fast=nm in ("nan", "huge_3e38", "tiny_1e-30"))
    v = np.zeros_like(base)
    v[16, 16, 16] = 1.0
    add("values_one_voxel", mrc_bytes(v), args=RUN + ["-t", "0.5", "-r", "6"], check=_nothing_evaluable, fast=True)
    add("values_one_voxel_no_t", mrc_bytes(v), args=RUN, check=_nothing_evaluable)
    v = np.zeros_like(base)
    v[16, 16, 16:20] = 1.0
    add("values_four_voxels", mrc_bytes(v), args=RUN + ["-t", "0.5", "-r", "6"], check=_nothing_evaluable)
    add("values_negated", mrc_bytes(-base), args=RUN + ["-t", "0.3", "-r", "6"], fast=True)
    add("values_small_1e-6", mrc_bytes(base * 1e-6), args=RUN + ["-t", "3e-7", "-r", "6"])
    add("values_large_1e6", mrc_bytes(base * 1e6), args=RUN + ["-t", "3e5", "-r", "6"])
    add("values_offset", mrc_bytes(base + 1000), args=RUN + ["-t", "1000.3", "-r", "6"])
    add("values_float16_inf", mrc_bytes(np.where(base > 0.9, np.inf, base).astype(np.float32), mode=12),
        expect="error")
    rng = np.random.default_rng(7)
    add("values_pure_noise", mrc_bytes(rng.normal(size=base.shape).astype(np.float32)),
        args=RUN + ["-t", "1.0", "-r", "6"])
    add("values_binary", mrc_bytes((base > 0.3).astype(np.float32)), args=RUN + ["-t", "0.5", "-r", "6"])
    # --- thresholds and resolutions ---------------------------------------------------------------
    for t in ("5", "1e30", "-1e30", "-0.5", "0"):
        add(f"threshold_{t}", good, args=RUN + ["-t", t, "-r", "6"], fast=t == "5")
    for t in ("nan", "inf", "-inf", "1e400", "abc", ""):
        add(f"threshold_bad_{t or 'empty'}", good, args=RUN + ["-t", t], expect="error", fast=t == "nan")
    for r in ("1e-30", "0", "-5", "nan", "1e30", "0.1"):
        add(f"resolution_{r}", good, args=RUN + ["-t", "0.3", "-r", r], expect="error", fast=r == "1e-30")
    add("resolution_nyquist", good, args=RUN + ["-t", "0.3", "-r", "2.5"], check=_note("finer than the Nyquist"))
    add("resolution_box", good, args=RUN + ["-t", "0.3", "-r", "500"])
    for vs in ("1e30", "1e-30", "0", "-2", "nan", "inf"):
        add(f"voxel_size_{vs}", good, args=RUN_TR + ["--voxel-size", vs], expect="error", fast=vs == "1e30")
    add("voxel_size_large", good, args=RUN_TR + ["--voxel-size", "150"], check=_voxel(150.0))
    for mv in ("0", "-1", "1000"):
        add(f"max_voxels_{mv}", good, args=RUN_TR + ["--max-voxels", mv], expect="error")
    add("max_voxels_exact", good, args=RUN_TR + ["--max-voxels", str(BOX ** 3)])
    # --- compression ------------------------------------------------------------------------------
    add("gzip_valid", gzip.compress(good), fname="map.mrc.gz", check=_same_as_base)
    add("bzip2_valid", bz2.compress(good), fname="map.mrc.bz2", check=_same_as_base)
    add("gzip_no_suffix", gzip.compress(good), fname="map.mrc", check=_same_as_base)
    add("gzip_truncated", gzip.compress(good)[:3000], fname="map.mrc.gz", expect="error", fast=True)
    add("gzip_corrupt", gzip.compress(good)[:20] + bytes(rng.integers(0, 256, 5000, dtype=np.uint8)),
        fname="map.mrc.gz", expect="error")
    add("bzip2_corrupt", b"BZh9" + bytes(rng.integers(0, 256, 5000, dtype=np.uint8)), fname="map.mrc.bz2",
        expect="error")
    add("gz_suffix_plain", good, fname="map.mrc.gz", check=_same_as_base)
    add("gzip_multimember", gzip.compress(good[:2000]) + gzip.compress(good[2000:]), fname="m.mrc.gz",
        check=_same_as_base)
    # a small header followed by a stream of zeros far longer than the header declares (bomb)
    add("gzip_bomb_small_header", lambda: _gzip_stream(mrc_bytes(base), zeros=1 << 28), fname="bomb.mrc.gz",
        args=RUN + ["-t", "0.3"], check=_note("data after the declared map"), fast=True)
    add("gzip_bomb_small_header_8g", lambda: _gzip_stream(mrc_bytes(base), zeros=8 << 30), fname="bomb.mrc.gz",
        slow=True)
    # header claims a consistent huge map (3000³ float32 = 108 GB): refused before inflating
    hdr = mrc_bytes(shape=(3000, 3000, 3000), payload=b"")
    add("gzip_bomb_huge_header", lambda: _gzip_stream(hdr, zeros=1 << 26), fname="huge.mrc.gz", expect="error",
        declared_bytes=3000 ** 3 * 4, fast=True)
    # a consistent 512³ map of zeros (0.5 GB inflated, from ~0.5 MB): read, then refused as constant
    hdr512 = mrc_bytes(shape=(512, 512, 512), payload=b"")
    add("gzip_bomb_512_zeros", lambda: _gzip_stream(hdr512, zeros=512 ** 3 * 4), fname="z512.mrc.gz", expect="error",
        declared_bytes=512 ** 3 * 4, slow=True)
    add("gzip_nsymbt_huge", gzip.compress(mrc_bytes(base, nsymbt=2 ** 31 - 1, ext=b"")), fname="m.mrc.gz",
        expect="error")
    # --- not maps ---------------------------------------------------------------------------------
    add("random_1k", bytes(rng.integers(0, 256, 1024, dtype=np.uint8)), expect="error")
    add("random_100k", bytes(rng.integers(0, 256, 100_000, dtype=np.uint8)), expect="error", fast=True)
    add("text_file", b"This is not a map.\n" * 200, expect="error")
    add("xml_as_map", _xml(), fname="map.xml", expect="error")
    add("png_like", b"\x89PNG\r\n\x1a\n" + bytes(3000), fname="map.png", expect="error")
    # --- EMDB header XML --------------------------------------------------------------------------
    RUN_X = RUN + ["--header", "{xml}"]
    add("xml_valid", good, args=RUN_X, xml=_xml(), check=_resolution(6.0))
    for nm, kw in [("contour_nan", {"contour": "nan"}), ("contour_inf", {"contour": "inf"}),
                   ("contour_1e400", {"contour": "1e400"}), ("contour_-inf", {"contour": "-inf"}),
                   ("contour_text", {"contour": "abc"}), ("resolution_nan", {"resolution": "NaN"}),
                   ("resolution_1e-30", {"resolution": "1e-30"}), ("resolution_1e400", {"resolution": "1e400"}),
                   ("spacing_1e30", {"spacing": ("1e30",) * 3}), ("spacing_zero", {"spacing": ("0",) * 3}),
                   ("spacing_nan", {"spacing": ("nan",) * 3}), ("spacing_negative", {"spacing": ("-2",) * 3}),
                   ("units_furlong", {"units": "furlong"}), ("res_units_parsec", {"res_units": "parsec"})]:
        add(f"xml_{nm}", good, args=RUN_X, xml=_xml(**kw), expect="error", fast=nm == "contour_nan")
    add("xml_units_nm", good, args=RUN_X, xml=_xml(spacing=("0.2",) * 3, units="nm", resolution=""),
        check=_voxel(2.0), fast=True)
    add("xml_res_units_nm", good, args=RUN_X, xml=_xml(resolution="0.6", res_units="nm"), check=_resolution(6.0))
    add("xml_empty_contour", good, args=RUN_X + ["-r", "6"], xml=_xml(contour=""))
    add("xml_not_xml", good, args=RUN_X, xml=b"<emd><map>", expect="error")
    add("xml_empty", good, args=RUN_X, xml=b"", expect="error")
    add("xml_binary", good, args=RUN_X, xml=bytes(range(256)) * 4, expect="error")
    add("xml_xxe", good, args=RUN_X, expect="error", fast=True,
        xml=_xml(prolog='<!DOCTYPE emd [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n').replace(
            b"<file>m.map</file>", b"<file>&xxe;</file>"))
    lol = "".join(f'<!ENTITY l{i} "{"&l%d;" % (i - 1) * 10 if i else "lol"}">' for i in range(10))
    add("xml_billion_laughs", good, args=RUN_X, expect="error",
        xml=_xml(prolog=f"<!DOCTYPE emd [{lol}]>\n").replace(b"<file>m.map</file>", b"<file>&l9;</file>"))
    add("xml_missing", good, args=RUN + ["--header", "{dir}/nope.xml"], expect="error")
    add("xml_is_dir", good, args=RUN + ["--header", "{dir}"], expect="error")
    # --- paths, names and report folders ------------------------------------------------------------
    add("name_dots", good, fname="...map", args=["{map}", "--device", "cpu", "--no-figures", "-t", "0.3"],
        cwd_default_out=True, fast=True)
    add("name_spaces_unicode", good, fname="my map ü [x] $(id).mrc")
    add("name_newline", good, fname="a\nb.mrc")
    add("name_dash", good, fname="-x.mrc", args=["--device", "cpu", "--no-figures", "--out", "{out}", "--",
                                                 "{map}"])
    add("name_255", good, fname="m" * 251 + ".mrc")
    add("name_too_long", None, args=RUN + ["{dir}/" + "m" * 300 + ".mrc"], expect="error", fast=True)
    add("path_too_long", None, args=["{dir}/" + "/".join(["d" * 200] * 25) + "/m.mrc", "--device", "cpu",
                                     "--out", "{out}"], expect="error")
    add("map_missing", None, args=["{dir}/nope.mrc", "--out", "{out}"], expect="error")
    add("map_is_dir", None, args=["{dir}", "--out", "{out}"], expect="error")
    add("map_dev_zero", None, args=["/dev/zero", "--out", "{out}"], expect="error")
    add("map_dev_null", None, args=["/dev/null", "--out", "{out}"], expect="error")
    add("emdb_id_no_mirror", None, args=["EMD-99999", "--archive", "{dir}/nomirror", "--out", "{out}"],
        expect="error")
    add("emdb_id_5000_digits", None, args=["EMD-" + "9" * 5000, "--out", "{out}"], expect="error")
    add("out_empty", good, args=RUN_TR[:-6] + ["--device", "cpu", "-t", "0.3", "--out", ""], expect="error",
        fast=True)
    add("out_dot", good, args=[a if a != "{out}" else "." for a in RUN_TR], expect="error")
    add("out_dev_null", good, args=[a if a != "{out}" else "/dev/null" for a in RUN_TR], expect="error",
        fast=True)
    add("out_is_input", good, args=[a if a != "{out}" else "{map}" for a in RUN_TR], expect="error")
    add("out_is_file", good, args=[a if a != "{out}" else "{dir}/file.txt" for a in RUN_TR], expect="error",
        files={"file.txt": b"x"})
    add("out_under_proc", good, args=[a if a != "{out}" else "/proc/gpuvalid/r" for a in RUN_TR], expect="error")
    add("out_name_too_long", good, args=[a if a != "{out}" else "{dir}/" + "o" * 300 for a in RUN_TR],
        expect="error")
    other = json.dumps({"input": {"file": "other.map", "sha256": "0" * 64}}).encode()
    add("out_other_report", good, args=[a if a != "{out}" else "{dir}/prev" for a in RUN_TR], expect="error",
        files={"prev/results.json": other, "prev/report.md": b"# other"}, fast=True)
    add("out_other_report_force", good, args=[a if a != "{out}" else "{dir}/prev" for a in RUN_TR] + ["--force"],
        files={"prev/results.json": other, "prev/report.md": b"# other", "prev/errors.log": b"old",
               "prev/figures/old.png": b"x", "prev/maps/old.mrc": b"x"}, check=_stale_removed("prev"))
    add("out_foreign_folder", good, args=[a if a != "{out}" else "{dir}/own" for a in RUN_TR], expect="error",
        files={"own/thesis.tex": b"x"})
    add("out_corrupt_results", good, args=[a if a != "{out}" else "{dir}/bad" for a in RUN_TR], expect="error",
        files={"bad/results.json": b"{not json"})
    return cases


def _stale_removed(sub: str):
    def check(o):
        d = o["out"]
        assert not (d / "errors.log").exists() or b"old" not in (d / "errors.log").read_bytes()
        assert not (d / "figures" / "old.png").exists() and not (d / "maps").exists()
        assert oct((d / "results.json").stat().st_mode & 0o777) == oct((d / "report.md").stat().st_mode & 0o777)
    return check


def _gzip_stream(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` followed by ``zeros`` zero bytes, compressed chunk by chunk (little memory)."""
    co = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = [co.compress(head)]
    chunk = bytes(1 << 24)
    left = zeros
    while left > 0:
        n = min(left, len(chunk))
        out.append(co.compress(chunk[:n]))
        left -= n
    out.append(co.flush())
    return b"".join(out)


if __name__ == "__main__":  # pragma: no cover
    cs = build(sys.argv[1] if len(sys.argv) > 1 else "fuzz_corpus", sys.argv[2] if len(sys.argv) > 2 else "all")
    for c in cs:
        print(f"{c.name:32s} {c.expect:7s} {'fast' if c.fast else ('slow' if c.slow else '')}")
    print(len(cs), "cases", os.linesep, end="")
