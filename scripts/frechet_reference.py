"""The Fréchet distance two ways, shared by the golden-value scripts (golden_frechet.py,
golden_unbiased.py): pytorch-fid's formula (scipy.linalg.sqrtm of Σ1·Σ2, with its eps retry)
and the symmetric form √(√Σ1 Σ2 √Σ1) through eigendecompositions, as s3 computes it."""
import numpy as np
from scipy import linalg


def fd_pytorch_fid(mu1, s1, mu2, s2, eps=1e-6):
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fd_symmetric(mu1, s1, mu2, s2):
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = r1 @ s2 @ r1
    ev = np.linalg.eigvalsh((inner + inner.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())
