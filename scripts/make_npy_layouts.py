#!/usr/bin/env python3
"""Writes tests/fixtures/npy_layouts/: the same small arrays in every layout numpy writes,
read by tests/npy_layouts.rs, which checks that each reads to the same values as the C-order
float64 (or, for pixels, C-order uint8) file.

    PYTHONPATH=.pydeps python3 scripts/make_npy_layouts.py

Needs only numpy. The values are exact in float16, so every float layout holds the same
numbers. Arrays are non-square, so a Fortran-order file read without transposing gives
other values, and `sigma` is deliberately not symmetric for the same reason. The output is
deterministic: a rerun rewrites the same bytes.
"""

import io
import os
import zipfile

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "npy_layouts")

# Float layouts: (file stem, dtype, Fortran order, .npy format version).
FLOAT_LAYOUTS = [
    ("c_f8", "<f8", False, None),
    ("c_f4", "<f4", False, None),
    ("c_f2", "<f2", False, None),
    ("fortran_f8", "<f8", True, None),
    ("fortran_f4", "<f4", True, None),
    ("fortran_f2", "<f2", True, None),
    ("be_f8", ">f8", False, None),
    ("be_f4", ">f4", False, None),
    ("be_f2", ">f2", False, None),
    ("fortran_be_f8", ">f8", True, None),
    ("v2_f8", "<f8", False, (2, 0)),
    ("v3_fortran_f4", "<f4", True, (3, 0)),
]

# Pixel layouts of an [N, H, W, 3] uint8 image array: (file stem, dtype, Fortran order).
PIXEL_LAYOUTS = [
    ("c_u1", "|u1", False),
    ("fortran_u1", "|u1", True),
    ("c_i8", "<i8", False),
    ("be_i2", ">i2", False),
    ("fortran_be_u2", ">u2", True),
    ("c_i4", "<i4", False),
]


def samples():
    """[3, 2, 4] samples (sample shape [2, 4]), multiples of 1/8 in [-1.5, 1.5)."""
    return (np.arange(24, dtype=np.float64).reshape(3, 2, 4) / 8.0) - 1.5


def pixels():
    """[2, 4, 5, 3] uint8 images (channels last; H ≠ 3, so not mistaken for channels
    first), every value ((flat index) · 7 + 3) mod 256."""
    return ((np.arange(120, dtype=np.int64) * 7 + 3) % 256).reshape(2, 4, 5, 3)


def moments():
    """mu [3] and a non-symmetric sigma [3, 3], exact in float16."""
    mu = np.array([0.5, -1.25, 3.0])
    sigma = np.array([[2.0, 0.125, 0.0], [0.25, 1.0, -0.375], [0.5, -0.75, 0.625]])
    return mu, sigma


def layout(a, dtype, fortran):
    a = a.astype(np.dtype(dtype))
    return np.asfortranarray(a) if fortran else np.ascontiguousarray(a)


def npy_bytes(a, version=None):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, version=version, allow_pickle=False)
    return buf.getvalue()


def write_npy(name, a, version=None):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(npy_bytes(a, version))


def write_npz(name, arrays, compressed):
    """An .npz as numpy writes it, with a fixed timestamp so reruns are byte-identical."""
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(os.path.join(OUT, name), "w", compression=method) as z:
        for key, a in arrays:
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            # numpy's savez opens each entry like this (zip64 extra fields included).
            with z.open(info, "w", force_zip64=True) as f:
                f.write(npy_bytes(a))


def main():
    os.makedirs(OUT, exist_ok=True)
    x = samples()
    for stem, dtype, fortran, version in FLOAT_LAYOUTS:
        write_npy(f"samples_{stem}.npy", layout(x, dtype, fortran), version)
    p = pixels()
    for stem, dtype, fortran in PIXEL_LAYOUTS:
        write_npy(f"pixels_{stem}.npy", layout(p, dtype, fortran))
    # The same pixels channels first ([N, 3, H, W]), and as float samples in [-1, 1].
    write_npy("pixels_planar_fortran_u1.npy", layout(p.transpose(0, 3, 1, 2), "|u1", True))
    write_npy("pixels_float_be_f8.npy", layout(p.transpose(0, 3, 1, 2) / 127.5 - 1.0, ">f8", False))
    mu, sigma = moments()
    for stem, dtype, fortran in [
        ("c_f8", "<f8", False),
        ("fortran_f8", "<f8", True),
        ("be_f8", ">f8", False),
        ("c_f4", "<f4", False),
        ("c_f2", "<f2", False),
        ("fortran_be_f4", ">f4", True),
    ]:
        arrays = [("mu", layout(mu, dtype, False)), ("sigma", layout(sigma, dtype, fortran))]
        write_npz(f"stats_{stem}.npz", arrays, compressed=True)
        write_npz(f"stats_{stem}_stored.npz", arrays, compressed=False)
    # Check what was written: numpy itself reads every file back to the same values.
    for stem, *_ in FLOAT_LAYOUTS:
        assert np.array_equal(np.load(os.path.join(OUT, f"samples_{stem}.npy")), x), stem
    for stem, *_ in PIXEL_LAYOUTS:
        assert np.array_equal(np.load(os.path.join(OUT, f"pixels_{stem}.npy")), p), stem
    print(f"wrote {len(os.listdir(OUT))} files to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
