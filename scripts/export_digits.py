#!/usr/bin/env python3
"""Export the UCI "Optical Recognition of Handwritten Digits" test images, as scikit-learn ships them,
into the compact file s3 embeds as its default `digits` dataset.

Writes data/digits/digits.u8: 1797 images x 64 pixels (8x8, row-major), one byte each with the
original 0..16 intensity. s3 maps a pixel p to p/8 - 1, so the data lie in [-1, 1].

scikit-learn bundles this data set (sklearn/datasets/data/digits.csv.gz); nothing is downloaded.
Run once: python3 scripts/export_digits.py
"""
import hashlib
import pathlib

import numpy as np
from sklearn.datasets import load_digits

out = pathlib.Path(__file__).resolve().parent.parent / "data" / "digits" / "digits.u8"
images = load_digits().data  # (1797, 64) float64 with integer values 0..16
assert images.shape == (1797, 64)
assert np.all(images == np.round(images)) and images.min() == 0 and images.max() == 16
raw = images.astype(np.uint8).tobytes()
out.write_bytes(raw)
print(f"wrote {out} ({len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()})")
