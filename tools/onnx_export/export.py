#!/usr/bin/env python3
"""Export diffusion networks and FID feature extractors to ONNX for s3.

s3 (the Rust side) runs real networks through ONNX Runtime. This tool writes the ``.onnx``
graphs together with the JSON configs s3 reads beside them (formats ``s3-onnx-model`` and
``s3-feature-extractor``, version 1; see README.md beside this file), and FID reference
statistics (``.npz`` with ``mu``/``sigma`` like pytorch-fid's ``--save-stats``).

Subcommands::

    export.py ddpm-cifar10  --out DIR [--random-weights] [--tiny] [--weights PATH_OR_HUB_ID]
    export.py inception     --out DIR [--random-weights] [--tiny] [--weights PATH]
    export.py cifar10-stats --extractor DIR/inception.json --out stats.npz
                            (--images DIR | --npy FILE | --cifar10-dir DIR | --random N)

Every export is checked after writing: ONNX Runtime's output is compared with the PyTorch
module's on a fixed random batch (a batch size different from the one used for tracing, so
the dynamic batch axis is exercised too), and the tool exits non-zero when the max abs
difference exceeds 1e-4 times the largest |torch output|.

Nothing here downloads anything unless you ask for real weights by hub id
(``ddpm-cifar10`` without ``--random-weights``); ``--random-weights`` builds every graph
offline from the architecture described in this file.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import warnings
from pathlib import Path
from typing import Callable, NoReturn, Sequence

import numpy as np

OPSET = 17
DEFAULT_SEED = 0
REL_TOL = 1e-4

DDPM_CIFAR10_HUB_ID = "google/ddpm-cifar10-32"

# The UNet2DModel config of google/ddpm-cifar10-32 (its config.json on the hub; the diffusers
# port of Ho et al.'s CIFAR-10 model: ch=128, ch_mult=(1, 2, 2, 2), 2 res blocks per level,
# attention at the 16x16 resolution, GroupNorm(32, eps=1e-6), positional time embedding with
# freq_shift=1 and no sin/cos flip, downsample conv without padding).
DDPM_CIFAR10_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    center_input_sample=False,
    time_embedding_type="positional",
    freq_shift=1,
    flip_sin_to_cos=False,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(128, 256, 256, 256),
    layers_per_block=2,
    mid_block_scale_factor=1,
    downsample_padding=0,
    act_fn="silu",
    attention_head_dim=None,
    norm_num_groups=32,
    norm_eps=1e-6,
)

# A tiny network of the same family for CI fixtures: same input/output convention
# (3x32x32, eps prediction, timestep in [0, 999]), one attention level, a few KB of weights.
DDPM_TINY_CONFIG = dict(
    DDPM_CIFAR10_CONFIG,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
)

# The DDPM training schedule of google/ddpm-cifar10-32 (its scheduler_config.json).
DDPM_BETAS = dict(beta_start=1e-4, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000)

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    """Prints an error to stderr and exits with status 1."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def import_torch():
    """Imports torch, with a clear error when it is missing."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        fail(f"this subcommand needs PyTorch ({e}); pip install -r tools/onnx_export/requirements.txt")
    return torch


def write_json(path: Path, obj: dict) -> None:
    """Writes `obj` as indented JSON with a trailing newline."""
    path.write_text(json.dumps(obj, indent=2) + "\n")


def command_line() -> str:
    """The command that is running, for the `source` field of the configs."""
    return "python3 tools/onnx_export/export.py " + " ".join(sys.argv[1:])


def export_onnx(module, example_inputs: tuple, path: Path, input_names: Sequence[str],
                output_names: Sequence[str]) -> None:
    """Exports `module` (in eval mode) with a dynamic batch axis on every input and output.

    Uses the TorchScript-based exporter (``dynamo=False``) at opset 17: it needs no extra
    packages and keeps the weights inside the .onnx file.
    """
    torch = import_torch()
    dynamic_axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing notes about Python-level shape checks (asserts, batch-size branches that do
        # not change the numbers) and constant folding; the check after export is what counts.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based")
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))


def ort_session(path: Path):
    """An ONNX Runtime CPU session for `path`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def normwise_error(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |a|) in float64.

    The relative error is normwise (divided by the largest |reference|), which stays meaningful
    where single elements of the reference are near zero.
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    abs_diff = float(np.max(np.abs(reference - candidate)))
    scale = float(np.max(np.abs(reference)))
    return abs_diff, (abs_diff / scale if scale > 0 else abs_diff)


def check_against_torch(label: str, module, inputs: Sequence[np.ndarray], onnx_output: np.ndarray,
                        rel_tol: float = REL_TOL) -> dict:
    """Checks an ONNX Runtime output against `module(*inputs)` in torch; exits non-zero on failure.

    Pass: max |onnx - torch| / max |torch| <= `rel_tol` (both float32).

    Some networks are so ill-conditioned in float32 that torch's own float32 result is further
    than `rel_tol` from the exact one (random-weight Inception: ~50 conv+BatchNorm+ReLU layers
    amplify rounding errors by ~1e3). Only then the module is also run in float64, and the
    export passes if ONNX Runtime is at most 3x as far from the float64 result as torch's float32
    result is: the graph computes the same function, within float32 rounding.
    """
    torch = import_torch()
    with torch.no_grad():
        ref = module(*[torch.from_numpy(x) for x in inputs]).numpy()
    if ref.shape != onnx_output.shape:
        fail(f"{label}: ONNX output shape {onnx_output.shape} != torch output shape {ref.shape}")
    if not np.all(np.isfinite(onnx_output)):
        fail(f"{label}: ONNX output has non-finite values")
    abs_diff, rel_diff = normwise_error(ref, onnx_output)
    print(f"{label}: shape {list(ref.shape)}, max|torch| {np.max(np.abs(ref)):.6g}, "
          f"max abs diff {abs_diff:.3e}, max rel diff {rel_diff:.3e} (tolerance {rel_tol:g})")
    result = {"max_abs_diff": abs_diff, "max_rel_diff": rel_diff}
    if rel_diff <= rel_tol:
        return result

    import copy

    with torch.no_grad():
        ref64 = copy.deepcopy(module).double()(
            *[torch.from_numpy(x.astype(np.float64)) for x in inputs]).numpy()
    _, torch_err = normwise_error(ref64, ref)
    _, onnx_err = normwise_error(ref64, onnx_output)
    print(f"{label}: above tolerance; against torch in float64: torch float32 rel error "
          f"{torch_err:.3e}, ONNX rel error {onnx_err:.3e}")
    result.update(torch_f32_vs_f64=torch_err, onnx_vs_f64=onnx_err)
    if torch_err > rel_tol and onnx_err <= 3 * torch_err:
        print(f"{label}: accepted: this network's float32 rounding error alone exceeds the "
              f"tolerance, and the ONNX graph is within 3x of it")
        return result
    fail(f"{label}: ONNX output differs from torch by {rel_diff:.3e} relative (> {rel_tol:g})")


# --------------------------------------------------------------------------------------------
# ddpm-cifar10
# --------------------------------------------------------------------------------------------


def build_random_unet(config: dict, seed: int):
    """A diffusers UNet2DModel with `config` and PyTorch's default random init under `seed`."""
    torch = import_torch()
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**config).eval()


def load_pretrained_unet(weights: str, subfolder: str | None):
    """Loads a UNet2DModel from a hub id or a local folder, with a clear error when offline.

    The hub repo google/ddpm-cifar10-32 keeps the U-Net at its root; a local folder with a
    ``unet/`` subfolder and no config at its root (a saved DDPMPipeline) is read from ``unet/``.
    """
    import_torch()
    from diffusers import UNet2DModel

    if subfolder is None and (Path(weights) / "unet" / "config.json").is_file() \
            and not (Path(weights) / "config.json").is_file():
        subfolder = "unet"  # a local DDPMPipeline folder
    try:
        kwargs = {"subfolder": subfolder} if subfolder else {}
        return UNet2DModel.from_pretrained(weights, **kwargs).eval()
    except (OSError, ValueError) as e:
        where = weights + (f" (subfolder {subfolder})" if subfolder else "")
        error = f"  {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    fail("could not load the U-Net weights:\n" + error + "\n"
         "If the Hugging Face hub cannot be reached, download the model where it can "
         f"(e.g. `hf download {DDPM_CIFAR10_HUB_ID} --local-dir DIR`) and pass "
         "--weights DIR, or use --random-weights to build the same graph offline with random "
         "weights.")


def wrap_unet_eps(unet):
    """Wraps a UNet2DModel as forward(sample [B,C,H,W], timestep [B]) -> eps [B,C,H,W]."""
    torch = import_torch()

    class UNetEps(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep):
            return self.unet(sample, timestep, return_dict=False)[0]

    return UNetEps(unet).eval()


def ddpm_model_config(onnx_name: str, name: str, sample_shape: Sequence[int], source: str) -> dict:
    """The s3-onnx-model config for a DDPM eps network on the linear vp-discrete schedule."""
    return {
        "format": "s3-onnx-model",
        "version": 1,
        "name": name,
        "onnx": onnx_name,
        "inputs": {"sample": "sample", "time": "timestep"},
        "output": "out",
        "sample_shape": list(sample_shape),
        "parameterization": "eps",
        "noise_schedule": {"name": "vp-discrete", "betas": "linear"},
        "time_input": {"kind": "affine", "scale": 1000.0, "offset": -1.0, "dtype": "float32"},
        "class_labels": None,
        # Per-channel mean of the CIFAR-10 training images on the model's [-1, 1] scale
        # (channel means 0.4914, 0.4822, 0.4465 of [0, 1] pixels); s3 uses it as E[x0] for
        # the AFS "average_x0" first step.
        "data_mean": CIFAR10_CHANNEL_MEAN,
        "source": source,
    }


# 2 * (0.4914, 0.4822, 0.4465) - 1: the CIFAR-10 train set's channel means on [-1, 1].
CIFAR10_CHANNEL_MEAN = [-0.0172, -0.0356, -0.1070]


def verify_unet(wrapper, onnx_path: Path, sample_shape: Sequence[int], seed: int) -> dict:
    """Compares ONNX Runtime with torch on fixed batches of 3 and 1 across the time range."""
    session = ort_session(onnx_path)
    rng = np.random.default_rng(seed + 1)
    results = {}
    for batch, timesteps in [(3, [0.0, 499.5, 999.0]), (1, [250.0])]:
        x = rng.standard_normal((batch, *sample_shape)).astype(np.float32)
        t = np.asarray(timesteps, dtype=np.float32)
        got = session.run(["out"], {"sample": x, "timestep": t})[0]
        label = f"U-Net ONNX vs torch (batch {batch}, timestep {timesteps})"
        results[f"batch{batch}"] = check_against_torch(label, wrapper, [x, t], got)
    return results


def cmd_ddpm_cifar10(args: argparse.Namespace) -> None:
    """Exports google/ddpm-cifar10-32's U-Net (or a random/tiny one) to DIR/model.onnx + model.json."""
    torch = import_torch()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny and not args.random_weights:
        fail("--tiny has no pretrained weights; use it with --random-weights")
    if args.random_weights and args.weights:
        fail("--weights and --random-weights exclude each other")
    if args.random_weights:
        config = DDPM_TINY_CONFIG if args.tiny else DDPM_CIFAR10_CONFIG
        unet = build_random_unet(config, args.seed)
        what = ("tiny diffusers UNet2DModel" if args.tiny else
                f"diffusers UNet2DModel with the architecture of {DDPM_CIFAR10_HUB_ID}")
        weights_note = f"random weights (PyTorch default init, torch.manual_seed({args.seed}))"
        name = "ddpm-cifar10-tiny-random" if args.tiny else "ddpm-cifar10-random"
    else:
        weights = args.weights or DDPM_CIFAR10_HUB_ID
        unet = load_pretrained_unet(weights, args.subfolder)
        what = "diffusers UNet2DModel"
        weights_note = f"weights {weights}"
        name = "ddpm-cifar10"
    cfg = unet.config
    sample_shape = [cfg.in_channels, cfg.sample_size, cfg.sample_size]
    if cfg.out_channels != cfg.in_channels:
        fail(f"out_channels {cfg.out_channels} != in_channels {cfg.in_channels}: not an eps network")
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"{what}: {n_params:,} parameters, sample shape {sample_shape}")

    wrapper = wrap_unet_eps(unet)
    onnx_path = out / "model.onnx"
    example = (torch.zeros(2, *sample_shape), torch.tensor([0.0, 999.0]))
    export_onnx(wrapper, example, onnx_path, ["sample", "timestep"], ["out"])
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes)")
    verify_unet(wrapper, onnx_path, sample_shape, args.seed)

    source = (f"{what}, {weights_note}; eps parameterization, DDPM linear betas "
              f"{DDPM_BETAS['beta_start']}..{DDPM_BETAS['beta_end']}, N={DDPM_BETAS['num_train_timesteps']}; "
              f"exported with torch {torch.__version__} (opset {OPSET}) by `{command_line()}`")
    config_path = out / "model.json"
    write_json(config_path, ddpm_model_config(onnx_path.name, name, sample_shape, source))
    print(f"wrote {config_path}")


# --------------------------------------------------------------------------------------------
# inception
# --------------------------------------------------------------------------------------------


def fid_inception_architecture():
    """pytorch_fid's FID InceptionV3 (fid_inception_v3) without loading any weights.

    Same construction as ``pytorch_fid.inception.fid_inception_v3``: torchvision's
    inception_v3 with 1008 classes, no aux logits, no init, and the FID-patched blocks.
    """
    from pytorch_fid import inception as fid

    net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    return net


def pytorch_fid_inception(state_dict_loader: Callable[[], dict]):
    """``pytorch_fid.inception.InceptionV3([3])`` (pool3, resize to 299, [0,1] -> [-1,1]).

    pytorch-fid downloads its weights from GitHub while constructing the model; this builds the
    very same module through pytorch-fid's own code with that download replaced by
    `state_dict_loader` (a local .pth, or random weights).
    """
    from pytorch_fid import inception as fid

    original = fid.load_state_dict_from_url
    fid.load_state_dict_from_url = lambda *a, **k: state_dict_loader()
    try:
        model = fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                resize_input=True, normalize_input=True)
    finally:
        fid.load_state_dict_from_url = original
    return model.eval()


def random_fid_state_dict(seed: int) -> dict:
    """A state dict for the FID Inception with PyTorch's default random init under `seed`."""
    torch = import_torch()
    torch.manual_seed(seed)
    return fid_inception_architecture().state_dict()


def calibrate_batchnorm(model, images, seed: int) -> None:
    """Sets every BatchNorm's running mean/var to the statistics of `images`.

    With random weights and the default running stats (0, 1) the activations shrink layer
    after layer, and the 2048 pool3 features come out tiny and nearly constant; after this
    the features of random weights have a usable scale and spread.
    """
    torch = import_torch()
    torch.manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()


def wrap_features(net, pytorch_fid_output: bool):
    """Wraps a feature network as forward(images [B,3,H,W]) -> features [B, dims].

    pytorch-fid's InceptionV3 returns a list with one [B, 2048, 1, 1] tensor per requested
    block (`pytorch_fid_output`); the tiny extractor returns [B, dims, 1, 1].
    """
    torch = import_torch()

    class Features(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            y = self.net(images)
            if pytorch_fid_output:
                y = y[0]
            return torch.flatten(y, 1)

    return Features(net).eval()


def tiny_feature_extractor(seed: int, dims: int = 32):
    """A small stand-in for the FID Inception with the same conventions, for CI fixtures.

    Input [B, 3, H, W] in [0, 1]; bilinear resize to 64x64 (like Inception's resize to 299),
    [0, 1] -> [-1, 1], two stride-2 3x3 convs with tanh, global average pool -> [B, dims].
    Random weights under `seed`.
    """
    torch = import_torch()
    nn = torch.nn
    F = torch.nn.functional

    class TinyFeatures(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(16, dims, kernel_size=3, stride=2, padding=1)

        def forward(self, x):
            x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
            x = 2 * x - 1
            x = torch.tanh(self.conv1(x))
            x = torch.tanh(self.conv2(x))
            return F.adaptive_avg_pool2d(x, (1, 1))

    torch.manual_seed(seed)
    return TinyFeatures().eval()


def extractor_config(onnx_name: str, name: str, input_size: Sequence[int], dims: int,
                     source: str) -> dict:
    """The s3-feature-extractor config."""
    return {
        "format": "s3-feature-extractor",
        "version": 1,
        "name": name,
        "onnx": onnx_name,
        "input": "images",
        "output": "features",
        "input_range": [0.0, 1.0],
        "input_size": list(input_size),
        "dims": dims,
        "source": source,
    }


def fixed_images(batch: int, size: Sequence[int], seed: int) -> np.ndarray:
    """`batch` random images in [0, 1], float32 [B, 3, H, W], quantised to 8 bits like PNGs."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(batch, 3, *size), dtype=np.uint8) / 255.0).astype(np.float32)


def cmd_inception(args: argparse.Namespace) -> None:
    """Exports pytorch-fid's InceptionV3 pool3 (or a tiny stand-in) to DIR/inception.onnx + .json."""
    torch = import_torch()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = list(args.input_size)
    if args.tiny:
        if args.weights:
            fail("--tiny builds a random stand-in network; it takes no --weights")
        net = tiny_feature_extractor(args.seed)
        wrapper = wrap_features(net, pytorch_fid_output=False)
        name = "tiny-random-features"
        what = (f"tiny random feature extractor (resize to 64, two 3x3 stride-2 convs + tanh, "
                f"global average pool; torch.manual_seed({args.seed}))")
    else:
        if args.random_weights == bool(args.weights):
            fail("inception needs exactly one of --weights PATH (pytorch-fid's "
                 f"{FID_WEIGHTS_FILE}) or --random-weights")
        if args.weights:
            path = Path(args.weights)
            if not path.is_file():
                fail(f"{path}: no such file (expected pytorch-fid's {FID_WEIGHTS_FILE}, from the "
                     "pytorch-fid GitHub release 'fid_weights')")
            net = pytorch_fid_inception(lambda: torch.load(str(path), map_location="cpu"))
            name = "pytorch-fid-inception-v3"
            what = f"pytorch-fid InceptionV3 pool3 (2048-d), weights {path.name}"
        else:
            net = pytorch_fid_inception(lambda: random_fid_state_dict(args.seed))
            calib = torch.from_numpy(fixed_images(16, size, args.seed + 2))
            calibrate_batchnorm(net, calib, args.seed)
            name = "pytorch-fid-inception-v3-random"
            what = (f"pytorch-fid InceptionV3 pool3 (2048-d) architecture with random weights "
                    f"(torch.manual_seed({args.seed}); BatchNorm statistics calibrated on 16 "
                    f"random images) - NOT the FID weights, for plumbing tests only")
        wrapper = wrap_features(net, pytorch_fid_output=True)

    example = torch.from_numpy(fixed_images(2, size, args.seed + 3))
    with torch.no_grad():
        dims = int(wrapper(example).shape[1])
    onnx_path = out / "inception.onnx"
    export_onnx(wrapper, (example,), onnx_path, ["images"], ["features"])
    print(f"{what}: wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes), {dims} features")
    verify_extractor(wrapper, onnx_path, size, args.seed)
    if args.weights and not args.tiny:
        print("compared against pytorch_fid.inception.InceptionV3([3]) built by pytorch-fid's own "
              "code with the weights file above (its GitHub download replaced by a local load)")

    source = f"{what}; exported with torch {torch.__version__} (opset {OPSET}) by `{command_line()}`"
    config_path = out / "inception.json"
    write_json(config_path, extractor_config(onnx_path.name, name, size, dims, source))
    print(f"wrote {config_path}")


def verify_extractor(wrapper, onnx_path: Path, size: Sequence[int], seed: int) -> None:
    """Compares ONNX Runtime with torch on fixed random 8-bit images (batches of 5 and 1)."""
    session = ort_session(onnx_path)
    for batch in (5, 1):
        x = fixed_images(batch, size, seed + 10 + batch)
        got = session.run(["features"], {"images": x})[0]
        check_against_torch(f"features ONNX vs torch (batch {batch})", wrapper, [x], got)


# --------------------------------------------------------------------------------------------
# cifar10-stats
# --------------------------------------------------------------------------------------------


def load_extractor(config_path: Path):
    """Reads an s3-feature-extractor config; returns (config, ONNX Runtime session)."""
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        fail(f"{config_path}: {e}")
    if config.get("format") != "s3-feature-extractor":
        fail(f"{config_path}: format is {config.get('format')!r}, expected 's3-feature-extractor'")
    onnx_path = (config_path.parent / config["onnx"]).resolve()
    if not onnx_path.is_file():
        fail(f"{config_path}: its onnx file {onnx_path} does not exist")
    return config, ort_session(onnx_path)


def images_from_pngs(folder: Path) -> np.ndarray:
    """All .png/.jpg images of `folder` (sorted by name) as uint8 [N, H, W, 3], RGB."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        fail(f"{folder}: no .png or .jpg files")
    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in files])


def images_from_npy(path: Path) -> np.ndarray:
    """A uint8 .npy of [N, H, W, 3] or [N, 3, H, W] images as [N, H, W, 3]."""
    a = np.load(path)
    if a.dtype != np.uint8:
        fail(f"{path}: dtype {a.dtype}, expected uint8 images")
    if a.ndim == 4 and a.shape[-1] == 3:
        return a
    if a.ndim == 4 and a.shape[1] == 3:
        return a.transpose(0, 2, 3, 1)
    fail(f"{path}: shape {a.shape}, expected [N, H, W, 3] or [N, 3, H, W]")


def images_from_cifar10(folder: Path, split: str) -> np.ndarray:
    """CIFAR-10 from the python version's pickles (cifar-10-batches-py) as uint8 [N, 32, 32, 3].

    `split` 'train' reads data_batch_1..5 (50,000 images, the usual FID reference), 'test'
    reads test_batch (10,000).
    """
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    arrays = []
    for name in names:
        path = folder / name
        if not path.is_file():
            fail(f"{path}: missing (expected the extracted cifar-10-python.tar.gz)")
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        arrays.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    return np.concatenate(arrays).transpose(0, 2, 3, 1)


def random_images(n: int, size: Sequence[int], seed: int) -> np.ndarray:
    """`n` uniformly random uint8 images [N, H, W, 3] (fixed seed), for offline fixtures."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)


def extract_features(session, config: dict, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Runs the extractor on uint8 [N, H, W, 3] images (/255 -> [0, 1]); float64 [N, dims]."""
    lo, hi = config["input_range"]
    h, w = config["input_size"]
    if images.shape[1:3] != (h, w):
        fail(f"images are {images.shape[1]}x{images.shape[2]}, the extractor expects {h}x{w}")
    feats = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        x = (lo + (hi - lo) * x).astype(np.float32)
        feats.append(session.run([config["output"]], {config["input"]: x})[0].astype(np.float64))
    features = np.concatenate(feats)
    if features.shape[1] != config["dims"]:
        fail(f"extractor returned {features.shape[1]} features, its config says {config['dims']}")
    return features


def fid_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) exactly as pytorch-fid computes them: mean and np.cov(rowvar=False)."""
    mu = np.mean(features, axis=0)
    sigma = np.cov(features, rowvar=False)
    return mu, sigma


def cmd_cifar10_stats(args: argparse.Namespace) -> None:
    """Computes FID reference statistics (mu, sigma) of a set of images through an extractor."""
    config, session = load_extractor(Path(args.extractor))
    if args.images:
        images = images_from_pngs(Path(args.images))
    elif args.npy:
        images = images_from_npy(Path(args.npy))
    elif args.cifar10_dir:
        images = images_from_cifar10(Path(args.cifar10_dir), args.split)
    else:
        images = random_images(args.random, config["input_size"], args.seed)
    if len(images) < 2:
        fail("need at least 2 images for a covariance")
    print(f"{len(images)} images {list(images.shape[1:])}, extractor {config['name']} "
          f"({config['dims']} features)")
    features = extract_features(session, config, images, args.batch_size)
    mu, sigma = fid_statistics(features)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, mu=mu, sigma=sigma)
    eig = np.linalg.eigvalsh(sigma)
    print(f"wrote {out}: mu {list(mu.shape)} float64, sigma {list(sigma.shape)} float64; "
          f"trace(sigma) {np.trace(sigma):.6g}, eigenvalues of sigma in [{eig[0]:.3g}, {eig[-1]:.3g}]")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The argparse parser with one subparser per subcommand."""
    p = argparse.ArgumentParser(
        description="Export diffusion networks and FID feature extractors to ONNX for s3.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "ddpm-cifar10",
        help="export google/ddpm-cifar10-32's U-Net (eps, vp-discrete linear betas)",
        description="Export diffusers' UNet2DModel of google/ddpm-cifar10-32 to DIR/model.onnx "
                    "(inputs sample [B,3,32,32] and timestep [B], float32; output out "
                    "[B,3,32,32]) and DIR/model.json, then check ONNX Runtime against torch.",
    )
    d.add_argument("--out", required=True, help="output folder (created if missing)")
    d.add_argument("--weights", default=None,
                   help="hub id or local folder for UNet2DModel.from_pretrained "
                        f"(default {DDPM_CIFAR10_HUB_ID}; needs the Hugging Face hub or a local copy)")
    d.add_argument("--subfolder", default=None,
                   help="subfolder of --weights holding the U-Net (default: the root, or 'unet' "
                        "for a local pipeline folder that has only unet/config.json)")
    d.add_argument("--random-weights", action="store_true",
                   help="build the same architecture with random weights, offline (no download)")
    d.add_argument("--tiny", action="store_true",
                   help="with --random-weights: a tiny U-Net of the same family (2 levels of 8/16 "
                        "channels, 1 attention level) for CI fixtures")
    d.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for random weights and test inputs")
    d.set_defaults(func=cmd_ddpm_cifar10)

    i = sub.add_parser(
        "inception",
        help="export pytorch-fid's InceptionV3 pool3 features (or a tiny stand-in)",
        description="Export pytorch-fid's FID InceptionV3 (2048-d pool3; bilinear resize to 299 "
                    "and [0,1] -> [-1,1] inside the graph) to DIR/inception.onnx (input images "
                    "[B,3,H,W] in [0,1], output features [B,dims], float32) and "
                    "DIR/inception.json, then check ONNX Runtime against torch.",
    )
    i.add_argument("--out", required=True, help="output folder (created if missing)")
    i.add_argument("--weights", default=None,
                   help=f"pytorch-fid's {FID_WEIGHTS_FILE} (from its GitHub release 'fid_weights')")
    i.add_argument("--random-weights", action="store_true",
                   help="the same architecture with random weights (BatchNorm statistics "
                        "calibrated on random images), offline; not usable for real FIDs")
    i.add_argument("--tiny", action="store_true",
                   help="a tiny random feature extractor (32 features) with the same input/output "
                        "conventions, for CI fixtures")
    i.add_argument("--input-size", type=int, nargs=2, default=[32, 32], metavar=("H", "W"),
                   help="image height and width the graph takes (default 32 32)")
    i.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for random weights and test inputs")
    i.set_defaults(func=cmd_inception)

    s = sub.add_parser(
        "cifar10-stats",
        help="compute FID reference statistics (mu, sigma) of images through an extractor",
        description="Run an s3 feature extractor through ONNX Runtime on 8-bit images "
                    "(/255 -> [0,1]) and write an .npz with mu (float64 [dims]) and sigma "
                    "(float64 [dims,dims], np.cov rowvar=False), like pytorch-fid --save-stats.",
    )
    s.add_argument("--extractor", required=True, help="the extractor's config (e.g. DIR/inception.json)")
    s.add_argument("--out", required=True, help="output .npz")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of .png/.jpg images (RGB)")
    src.add_argument("--npy", help="uint8 .npy of images, [N,H,W,3] or [N,3,H,W]")
    src.add_argument("--cifar10-dir", help="the extracted cifar-10-batches-py folder")
    src.add_argument("--random", type=int, metavar="N", help="N random uint8 images (fixed seed), offline")
    s.add_argument("--split", choices=["train", "test"], default="train",
                   help="with --cifar10-dir: the 50,000 training images (default) or the 10,000 test images")
    s.add_argument("--batch-size", type=int, default=50, help="images per ONNX Runtime call (default 50)")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for --random")
    s.set_defaults(func=cmd_cifar10_stats)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
