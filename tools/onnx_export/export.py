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
    export.py pixel --model PATH_OR_HUB_ID --out DIR      any diffusers UNet2DModel
    export.py sd    --model PATH_OR_HUB_ID --out DIR (--prompts P... | --prompt-embeds E --null-embed N)
                    [--guidance-scale 7.5]                Stable Diffusion 1.x/2.x: U-Net,
                                                          VAE decoder, prompt embeddings
    export.py flow  --model PATH_OR_HUB_ID --out DIR (--prompts P... | --prompt-embeds E
                    --pooled-embeds P --null-embed N --null-pooled NP)   Stable Diffusion 3
    (pixel, sd and flow also take --random-weights [--tiny] to build models offline)

Every export is checked after writing: ONNX Runtime's output is compared with the PyTorch
module's on a fixed random batch (a batch size different from the one used for tracing, so
the dynamic batch axis is exercised too), and the tool exits non-zero when the max abs
difference exceeds 1e-4 times the largest |torch output|.

Nothing here downloads anything unless you ask for real weights by hub id
(``ddpm-cifar10`` without ``--random-weights``, ``--model HUB_ID``); ``--random-weights``
builds every graph offline from the architecture described in this file (``--tiny``) or in
a local folder's config.json files.
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

    consolidate_external_data(path)
    # By path: graphs over 2 GB (e.g. an SD U-Net in float32) keep their weights in an external
    # data file beside the .onnx, and only the path-based check reads it.
    onnx.checker.check_model(str(path))


def consolidate_external_data(path: Path) -> None:
    """Graphs over protobuf's 2 GB limit come out of torch.onnx.export with one external file
    per weight tensor beside the .onnx; this gathers them into a single `<name>.data` file
    (ONNX Runtime finds it beside the graph) and deletes the per-tensor files. Graphs under
    2 GB are one self-contained .onnx and are left alone."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    external = [t for t in model.graph.initializer if uses_external_data(t)]
    if not external:
        return
    locations = {dict((e.key, e.value) for e in t.external_data)["location"] for t in external}
    data_name = path.name + ".data"
    if locations == {data_name}:
        return
    model = onnx.load(str(path))  # with the weights
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    for loc in locations - {data_name}:
        (path.parent / loc).unlink(missing_ok=True)
    print(f"{path.name}: weights in {len(locations)} external files gathered into {data_name} "
          f"({(path.parent / data_name).stat().st_size:,} bytes; keep it beside {path.name})")


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
# Diffusers checkpoints: shared loading, scheduler configs, conditioning
# --------------------------------------------------------------------------------------------

# diffusers' prediction_type -> s3's parameterization.
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
# The discrete beta schedules s3's vp-discrete knows (1000 training steps), as diffusers
# defines them: linear 1e-4..0.02 (DDPM) and scaled_linear sqrt(0.00085)..sqrt(0.012) squared
# (Stable Diffusion).
S3_BETAS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}


def is_local(model: str) -> bool:
    """True when `model` names an existing local folder (else it is taken as a hub id)."""
    return Path(model).is_dir()


def hub_hint(model: str) -> str:
    return ("If the Hugging Face hub cannot be reached, download the model where it can "
            f"(e.g. `hf download {model} --local-dir DIR`) and pass --model DIR, or use "
            "--random-weights --tiny to build a tiny model of the same class offline.")


def load_component(cls, model: str, subfolders: Sequence[str | None], what: str):
    """`cls.from_pretrained(model, subfolder=...)` trying `subfolders` in order.

    Returns (module, subfolder used). Exits with every attempt's error and a hint when none
    loads (e.g. offline with a hub id).
    """
    import_torch()
    errors = []
    for sub in subfolders:
        if is_local(model):
            folder = Path(model) / sub if sub else Path(model)
            if not (folder / "config.json").is_file():
                errors.append(f"  {folder}: no config.json")
                continue
        try:
            kwargs = {"subfolder": sub} if sub else {}
            return cls.from_pretrained(model, **kwargs).eval(), sub
        except (OSError, ValueError, EnvironmentError) as e:
            where = model + (f" (subfolder {sub})" if sub else "")
            errors.append(f"  {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    fail(f"could not load the {what} ({cls.__name__}):\n" + "\n".join(errors) + "\n" + hub_hint(model))


def random_component(cls, model: str | None, subfolders: Sequence[str | None], default_config: dict,
                     seed: int):
    """`cls` with random weights (PyTorch default init under `seed`).

    The architecture is `model`'s config (config.json in the first of `subfolders` that has
    one; no weights are read) when `model` is given, else `default_config`.
    """
    torch = import_torch()
    config = default_config
    if model is not None:
        config = None
        for sub in subfolders:
            try:
                kwargs = {"subfolder": sub} if sub else {}
                config = cls.load_config(model, **kwargs)
                break
            except (OSError, ValueError, EnvironmentError):
                continue
        if config is None:
            fail(f"no {cls.__name__} config.json in {model} (tried subfolders "
                 f"{', '.join(s or '.' for s in subfolders)}). " + hub_hint(model))
        torch.manual_seed(seed)
        return cls.from_config(config).eval()
    torch.manual_seed(seed)
    return cls(**config).eval()


def load_scheduler_config(model: str | None) -> tuple[dict | None, str]:
    """The scheduler config of a pipeline folder / hub repo: scheduler/scheduler_config.json,
    else scheduler_config.json at its root. Returns (config or None, where it was found)."""
    if model is None:
        return None, ""
    from diffusers import DDPMScheduler

    for sub in ("scheduler", None):
        if is_local(model) and not (Path(model) / (sub or "") / "scheduler_config.json").is_file():
            continue
        try:
            kwargs = {"subfolder": sub} if sub else {}
            cfg = DDPMScheduler.load_config(model, **kwargs)
            return dict(cfg), f"{model}/{sub + '/' if sub else ''}scheduler_config.json"
        except (OSError, ValueError, EnvironmentError):
            continue
    return None, ""


def vp_discrete_from_scheduler(sched: dict | None, where: str, args: argparse.Namespace,
                               default_betas: str) -> tuple[dict, str, str]:
    """(noise_schedule, parameterization, note) from a DDPM-family scheduler config.

    `--beta-schedule` / `--prediction-type` override the config; without a config the defaults
    are `default_betas` and epsilon. Exits when the betas are not one of s3's vp-discrete
    schedules (1000 steps, linear 1e-4..0.02 or scaled_linear 0.00085..0.012).
    """
    sched = dict(sched or {})
    if args.beta_schedule:
        sched["beta_schedule"] = args.beta_schedule
        sched.setdefault("beta_start", S3_BETAS[args.beta_schedule][0])
        sched.setdefault("beta_end", S3_BETAS[args.beta_schedule][1])
    if args.prediction_type:
        sched["prediction_type"] = args.prediction_type
    betas = sched.get("beta_schedule", default_betas)
    prediction = sched.get("prediction_type", "epsilon")
    if sched.get("trained_betas") is not None:
        fail(f"{where}: explicit trained_betas; s3's vp-discrete knows only the linear and "
             "scaled_linear schedules")
    if betas not in S3_BETAS:
        fail(f"{where or 'scheduler'}: beta_schedule {betas!r}; s3's vp-discrete knows "
             f"{', '.join(S3_BETAS)} (pass --beta-schedule to override)")
    start, end = S3_BETAS[betas]
    got = (float(sched.get("beta_start", start)), float(sched.get("beta_end", end)),
           int(sched.get("num_train_timesteps", 1000)))
    if not (np.isclose(got[0], start, rtol=1e-6) and np.isclose(got[1], end, rtol=1e-6) and got[2] == 1000):
        fail(f"{where}: {betas} betas {got[0]}..{got[1]} over {got[2]} steps; s3's vp-discrete "
             f"{betas} is {start}..{end} over 1000 steps")
    if sched.get("rescale_betas_zero_snr"):
        fail(f"{where}: rescale_betas_zero_snr changes the betas; s3 has no such schedule")
    if prediction not in PREDICTION_TYPES:
        fail(f"{where or 'scheduler'}: prediction_type {prediction!r}; s3 reads "
             f"{', '.join(PREDICTION_TYPES)} (pass --prediction-type to override)")
    note = (f"{betas} betas {start}..{end}, N=1000, prediction_type {prediction} "
            f"({'from ' + where if where else 'defaults'}"
            f"{', overridden on the command line' if args.beta_schedule or args.prediction_type else ''})")
    return {"name": "vp-discrete", "betas": betas}, PREDICTION_TYPES[prediction], note


VP_DISCRETE_TIME = {"kind": "affine", "scale": 1000.0, "offset": -1.0, "dtype": "float32"}
FLOW_TIME = {"kind": "affine", "scale": 1000.0, "offset": 0.0, "dtype": "float32"}


def base_model_config(name: str, inputs: dict, sample_shape: Sequence[int], parameterization: str,
                      noise_schedule: dict, time_input: dict, source: str) -> dict:
    return {
        "format": "s3-onnx-model",
        "version": 1,
        "name": name,
        "onnx": "model.onnx",
        "inputs": inputs,
        "output": "out",
        "sample_shape": [int(v) for v in sample_shape],
        "parameterization": parameterization,
        "noise_schedule": noise_schedule,
        "time_input": time_input,
        "class_labels": None,
        "source": source,
    }


def add_fid(config: dict, args: argparse.Namespace, out: Path) -> None:
    """Adds `fid` (extractor config + statistics, relative to `out`) when --fid was given."""
    if not args.fid:
        return
    extractor, stats = args.fid
    for rel in (extractor, stats):
        if not (out / rel).is_file():
            print(f"warning: --fid: {out / rel} does not exist (yet)", file=sys.stderr)
    config["fid"] = {"extractor": extractor, "stats": stats}


def load_npy(path: str, what: str, ndim: Sequence[int]) -> np.ndarray:
    """A float .npy (cast to float32) with one of the dimensionalities `ndim`."""
    p = Path(path)
    if not p.is_file():
        fail(f"{what}: {p}: no such file")
    a = np.load(p)
    if a.dtype.kind != "f":
        fail(f"{what}: {p}: dtype {a.dtype}, expected floats")
    if a.ndim not in ndim:
        fail(f"{what}: {p}: shape {list(a.shape)}, expected {' or '.join(f'{n} dims' for n in ndim)}")
    return a.astype(np.float32)


def prompt_rows(args: argparse.Namespace) -> list[str]:
    """Labels of the conditioning rows (the prompts, then the null entry)."""
    if args.prompts:
        return [*args.prompts, ""]
    n = args.num_random_prompts if not args.prompt_embeds else None
    return ([f"random embedding {i}" for i in range(n)] if n else
            [f"{args.prompt_embeds}[{i}]" for i in range(len(np.load(args.prompt_embeds)))]) + ["null"]


def write_conditioning(out: Path, values: np.ndarray, labels: Sequence[str], input_name: str,
                       guidance: float, extra: dict | None = None) -> dict:
    """Writes conditioning.npy (float32 [R, ...]) and prompts.json; returns the config entry."""
    np.save(out / "conditioning.npy", np.ascontiguousarray(values, dtype=np.float32))
    write_json(out / "prompts.json", {
        "description": "The rows of conditioning.npy (not read by s3): sample i of a run uses "
                       "non-null row i mod (rows - 1); the last row is the unconditional (null) "
                       "entry used for classifier-free guidance.",
        "rows": list(labels), "null_index": len(labels) - 1, **(extra or {})})
    return {"input": input_name, "values": "conditioning.npy", "null_index": int(len(values) - 1),
            "guidance_scale": float(guidance)}


def wrap_vae_decoder(vae, scaling: float, shift: float | None):
    """forward(latent) = clamp(vae.decode(latent / scaling [+ shift]), -1, 1): the pipeline's
    decode step (latent scaling baked in), image [B, 3, H, W] in [-1, 1]."""
    torch = import_torch()

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latent):
            z = latent / scaling
            if shift is not None:
                z = z + shift
            return self.vae.decode(z, return_dict=False)[0].clamp(-1.0, 1.0)

    return Decode().eval()


def export_decoder(vae, out: Path, latent_shape: Sequence[int], seed: int) -> tuple[dict, dict]:
    """decoder.onnx from an AutoencoderKL; returns (config entry, torch-check results)."""
    torch = import_torch()
    scaling = float(vae.config.scaling_factor)
    shift = getattr(vae.config, "shift_factor", None)
    shift = None if shift is None else float(shift)
    wrapper = wrap_vae_decoder(vae, scaling, shift)
    example = torch.zeros(2, *latent_shape)
    with torch.no_grad():
        image_shape = list(wrapper(example).shape[1:])
    path = out / "decoder.onnx"
    export_onnx(wrapper, (example,), path, ["latent"], ["image"])
    print(f"wrote {path} ({path.stat().st_size:,} bytes): latent {list(latent_shape)} -> image "
          f"{image_shape}, decode(z / {scaling:g}{f' + {shift:g}' if shift is not None else ''}) "
          "clamped to [-1, 1]")
    session = ort_session(path)
    rng = np.random.default_rng(seed + 7)
    results = {}
    for batch in (3, 1):
        z = (scaling * rng.standard_normal((batch, *latent_shape))).astype(np.float32)
        got = session.run(["image"], {"latent": z})[0]
        results[f"batch{batch}"] = check_against_torch(f"decoder ONNX vs torch (batch {batch})",
                                                       wrapper, [z], got)
    entry = {"onnx": "decoder.onnx", "input": "latent", "output": "image", "output_shape": image_shape}
    return entry, {"scaling_factor": scaling, "shift_factor": shift, **results}


def verify_conditional(wrapper, path: Path, sample_shape: Sequence[int], cond: np.ndarray,
                       timesteps: Sequence[Sequence[float]], seed: int) -> dict:
    """ONNX Runtime vs torch for forward(sample, timestep, encoder_hidden_states)."""
    session = ort_session(path)
    rng = np.random.default_rng(seed + 1)
    results = {}
    for ts in timesteps:
        batch = len(ts)
        x = rng.standard_normal((batch, *sample_shape)).astype(np.float32)
        t = np.asarray(ts, dtype=np.float32)
        c = cond[np.arange(batch) % len(cond)]
        got = session.run(["out"], {"sample": x, "timestep": t, "encoder_hidden_states": c})[0]
        label = f"model ONNX vs torch (batch {batch}, timestep {list(ts)})"
        results[f"batch{batch}"] = check_against_torch(label, wrapper, [x, t, c], got)
    return results


def print_written(out: Path) -> None:
    files = sorted(p for p in out.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"{out}/: " + ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in files)
          + f"; {total:,} bytes in all")


# --------------------------------------------------------------------------------------------
# pixel: any diffusers UNet2DModel
# --------------------------------------------------------------------------------------------


def cmd_pixel(args: argparse.Namespace) -> None:
    """Exports a diffusers UNet2DModel (pixel space) to DIR/model.onnx + model.json."""
    torch = import_torch()
    from diffusers import UNet2DModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny and not args.random_weights:
        fail("--tiny has no pretrained weights; use it with --random-weights")
    if not args.random_weights and not args.model:
        fail("pixel needs --model PATH_OR_HUB_ID (or --random-weights)")
    subs = [args.subfolder] if args.subfolder else [None, "unet"]
    if args.random_weights:
        default = DDPM_TINY_CONFIG if args.tiny else DDPM_CIFAR10_CONFIG
        unet = random_component(UNet2DModel, None if args.tiny else args.model, subs, default, args.seed)
        what = ("tiny diffusers UNet2DModel" if args.tiny else
                f"diffusers UNet2DModel with the architecture of {args.model or DDPM_CIFAR10_HUB_ID}")
        weights_note = f"random weights (PyTorch default init, torch.manual_seed({args.seed}))"
        name = "pixel-tiny-random" if args.tiny else "pixel-random"
    else:
        unet, _ = load_component(UNet2DModel, args.model, subs, "U-Net")
        what = "diffusers UNet2DModel"
        weights_note = f"weights {args.model}"
        name = args.name or Path(args.model.rstrip("/")).name
    cfg = unet.config
    if getattr(cfg, "num_class_embeds", None) or getattr(cfg, "class_embed_type", None):
        fail("this UNet2DModel is class-conditional (num_class_embeds / class_embed_type); the pixel "
             "subcommand exports unconditional U-Nets only")
    size = cfg.sample_size
    size = [size, size] if isinstance(size, int) else list(size)
    sample_shape = [cfg.in_channels, *size]
    if cfg.out_channels != cfg.in_channels:
        fail(f"out_channels {cfg.out_channels} != in_channels {cfg.in_channels}: the output is not "
             "an eps/x0/v prediction of the sample (learned-variance U-Nets are not supported)")
    sched, where = load_scheduler_config(args.model if not args.tiny else None)
    noise_schedule, parameterization, sched_note = vp_discrete_from_scheduler(sched, where, args, "linear")
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"{what}: {n_params:,} parameters, sample shape {sample_shape}; {sched_note}")

    wrapper = wrap_unet_eps(unet)
    onnx_path = out / "model.onnx"
    example = (torch.zeros(2, *sample_shape), torch.tensor([0.0, 999.0]))
    export_onnx(wrapper, example, onnx_path, ["sample", "timestep"], ["out"])
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes)")
    verify_unet(wrapper, onnx_path, sample_shape, args.seed)

    source = (f"{what} ({n_params:,} parameters), {weights_note}; {parameterization} "
              f"parameterization, {sched_note}; exported with torch {torch.__version__}, "
              f"diffusers {diffusers_version()} (opset {OPSET}) by `{command_line()}`")
    config = base_model_config(name, {"sample": "sample", "time": "timestep"}, sample_shape,
                               parameterization, noise_schedule, VP_DISCRETE_TIME, source)
    add_fid(config, args, out)
    write_json(out / "model.json", config)
    print(f"wrote {out / 'model.json'}")


def diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


# --------------------------------------------------------------------------------------------
# sd: UNet2DConditionModel + AutoencoderKL decoder + prompt embeddings (Stable Diffusion 1.x/2.x)
# --------------------------------------------------------------------------------------------

# A tiny Stable-Diffusion-class pair for CI fixtures: 4-channel 8x8 latents, 16-d text
# embeddings, a VAE with one 2x upsampling (images 16x16).
SD_TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
    attention_head_dim=2, norm_num_groups=4,
)
SD_TINY_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
    latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=0.18215,
)
TINY_TEXT_TOKENS = 77  # CLIP's sequence length


def encode_prompts_clip(model: str, prompts: Sequence[str]) -> np.ndarray:
    """Prompt embeddings [len(prompts), 77, D] as StableDiffusionPipeline.encode_prompt makes
    them (clip_skip None): CLIP tokenizer padded to its max length, text encoder's last hidden
    state (with the attention mask where the encoder's config asks for one)."""
    torch = import_torch()
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    except (OSError, ValueError, EnvironmentError) as e:
        fail(f"could not load the CLIP tokenizer of {model} (subfolder tokenizer): "
             f"{str(e).splitlines()[0]}\n" + hub_hint(model))
    encoder, _ = load_component(CLIPTextModel, model, ["text_encoder"], "text encoder")
    tokens = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    mask = tokens.attention_mask if getattr(encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        emb = encoder(tokens.input_ids, attention_mask=mask)[0]
    return emb.numpy().astype(np.float32)


def sd_conditioning(args: argparse.Namespace, model: str | None, seq_dim: tuple[int, int] | None,
                    rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """conditioning rows [R, L, D]: prompts then null. Returns (values, note)."""
    if args.prompts:
        if model is None:
            fail("--prompts needs the pipeline's text encoder (--model); with --random-weights "
                 "--tiny use --prompt-embeds/--null-embed or the random embeddings")
        emb = encode_prompts_clip(model, [*args.prompts, ""])
        return emb, f"prompts {list(args.prompts)} and the empty prompt encoded by {model}'s CLIP text encoder"
    if args.prompt_embeds:
        if not args.null_embed:
            fail("--prompt-embeds needs --null-embed (the unconditional embedding, e.g. of the "
                 "empty prompt)")
        emb = load_npy(args.prompt_embeds, "--prompt-embeds", (3,))
        null = load_npy(args.null_embed, "--null-embed", (2, 3))
        if null.size != np.prod(emb.shape[1:]):
            fail(f"--null-embed shape {list(null.shape)} does not match one prompt embedding "
                 f"{list(emb.shape[1:])}")
        null = null.reshape(1, *emb.shape[1:])
        return np.concatenate([emb, null]), (f"prompt embeddings {args.prompt_embeds}, null "
                                             f"embedding {args.null_embed}")
    if not args.random_weights:
        fail("sd needs --prompts or --prompt-embeds/--null-embed")
    n = args.num_random_prompts
    emb = rng.standard_normal((n + 1, *seq_dim)).astype(np.float32)
    return emb, f"{n} random N(0, 1) prompt embeddings and a random null embedding (numpy seed {args.seed})"


def load_denoiser_and_vae(args: argparse.Namespace, command: str, stem: str, cls, subfolder: str,
                          label: str, tiny_net: dict, tiny_vae: dict):
    """The denoiser (`cls` in `subfolder`) and the `AutoencoderKL` of a latent pipeline:
    pretrained from `--model`, or random (`--random-weights`; `--tiny` for the tiny configs,
    else `--model`'s architecture). Returns (net, vae, what, weights note, default name) for
    the config's `source` and `name`; `command` is the subcommand (for errors) and `stem`
    names random exports (`sd-tiny-random`)."""
    from diffusers import AutoencoderKL

    if args.tiny and not args.random_weights:
        fail("--tiny has no pretrained weights; use it with --random-weights")
    if not args.random_weights and not args.model:
        fail(f"{command} needs --model PATH_OR_HUB_ID (or --random-weights --tiny)")
    if args.random_weights and not args.tiny and not args.model:
        fail("--random-weights without --tiny takes the architecture from --model's configs")
    parts = f"{cls.__name__} + AutoencoderKL"
    if args.random_weights:
        arch = None if args.tiny else args.model
        net = random_component(cls, arch, [subfolder], tiny_net, args.seed)
        vae = random_component(AutoencoderKL, arch, ["vae"], tiny_vae, args.seed + 1)
        what = (f"tiny diffusers {parts}" if args.tiny else
                f"diffusers {parts} with the architecture of {args.model}")
        weights_note = (f"random weights (PyTorch default init, torch.manual_seed({args.seed}) for "
                        f"the {label}, {args.seed + 1} for the VAE)")
        name = f"{stem}-tiny-random" if args.tiny else f"{stem}-random"
    else:
        net, _ = load_component(cls, args.model, [subfolder], label)
        vae, _ = load_component(AutoencoderKL, args.model, ["vae"], "VAE")
        what = f"diffusers {parts}"
        weights_note = f"weights {args.model}"
        name = args.name or Path(args.model.rstrip("/")).name
    return net, vae, what, weights_note, name


def cmd_sd(args: argparse.Namespace) -> None:
    """Exports a Stable-Diffusion-class pipeline: U-Net, VAE decoder, prompt embeddings."""
    torch = import_torch()
    from diffusers import UNet2DConditionModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unet, vae, what, weights_note, name = load_denoiser_and_vae(
        args, "sd", "sd", UNet2DConditionModel, "unet", "U-Net", SD_TINY_UNET, SD_TINY_VAE)
    arch = None if args.tiny else args.model
    ucfg = unet.config
    if getattr(ucfg, "addition_embed_type", None) or getattr(ucfg, "class_embed_type", None) \
            or getattr(ucfg, "num_class_embeds", None):
        fail("this UNet2DConditionModel needs added conditions (SDXL's text_embeds/time_ids or "
             "class labels); the sd subcommand exports U-Nets conditioned on "
             "encoder_hidden_states only (Stable Diffusion 1.x/2.x)")
    size = ucfg.sample_size
    size = [size, size] if isinstance(size, int) else list(size)
    if args.latent_size:
        size = list(args.latent_size)
    sample_shape = [ucfg.in_channels, *size]
    if ucfg.out_channels != ucfg.in_channels:
        fail(f"out_channels {ucfg.out_channels} != in_channels {ucfg.in_channels}")
    if vae.config.latent_channels != ucfg.in_channels:
        fail(f"VAE latent_channels {vae.config.latent_channels} != U-Net in_channels {ucfg.in_channels}")
    sched, where = load_scheduler_config(arch)
    noise_schedule, parameterization, sched_note = vp_discrete_from_scheduler(
        sched, where, args, "scaled_linear")
    rng = np.random.default_rng(args.seed)
    cross = ucfg.cross_attention_dim
    cross = cross if isinstance(cross, int) else cross[0]
    values, cond_note = sd_conditioning(args, args.model if not args.random_weights else None,
                                        (TINY_TEXT_TOKENS, cross), rng)
    if values.shape[-1] != cross:
        fail(f"embedding width {values.shape[-1]} != the U-Net's cross_attention_dim {cross}")
    n_unet = sum(p.numel() for p in unet.parameters())
    n_dec = sum(p.numel() for p in vae.decoder.parameters()) + sum(
        p.numel() for p in (vae.post_quant_conv.parameters() if vae.post_quant_conv is not None else []))
    print(f"{what}: U-Net {n_unet:,} parameters, VAE decoder {n_dec:,}; latent {sample_shape}; "
          f"{sched_note}; conditioning {list(values.shape)}")

    class UNetCond(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                             return_dict=False)[0]

    wrapper = UNetCond().eval()
    onnx_path = out / "model.onnx"
    example = (torch.zeros(2, *sample_shape), torch.tensor([0.0, 999.0]), torch.from_numpy(values[:2]))
    export_onnx(wrapper, example, onnx_path, ["sample", "timestep", "encoder_hidden_states"], ["out"])
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes)")
    verify_conditional(wrapper, onnx_path, sample_shape, values,
                       [[0.0, 499.5, 999.0], [250.0]], args.seed)
    decoder, _ = export_decoder(vae, out, sample_shape, args.seed)
    conditioning = write_conditioning(out, values, prompt_rows(args), "encoder_hidden_states",
                                      args.guidance_scale)

    source = (f"{what} (U-Net {n_unet:,} parameters, VAE decoder {n_dec:,}), {weights_note}; "
              f"{parameterization} parameterization, {sched_note}; conditioning: {cond_note}; "
              f"decoder = clamp(vae.decode(z / {vae.config.scaling_factor:g}), -1, 1); exported with "
              f"torch {torch.__version__}, diffusers {diffusers_version()} (opset {OPSET}) by "
              f"`{command_line()}`")
    config = base_model_config(name, {"sample": "sample", "time": "timestep"}, sample_shape,
                               parameterization, noise_schedule, VP_DISCRETE_TIME, source)
    config["decoder"] = decoder
    config["conditioning"] = conditioning
    add_fid(config, args, out)
    write_json(out / "model.json", config)
    print(f"wrote {out / 'model.json'}")
    print_written(out)


# --------------------------------------------------------------------------------------------
# flow: SD3Transformer2DModel + VAE decoder + prompt embeddings (Stable Diffusion 3 class)
# --------------------------------------------------------------------------------------------

SD3_TINY_TRANSFORMER = dict(
    sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
    num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
    pooled_projection_dim=8, out_channels=4, pos_embed_max_size=8,
)
# SD3's VAE conventions (no quant convs, scaling 1.5305, shift 0.0609) at a tiny size.
SD3_TINY_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
    latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=1.5305,
    shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
)
SD3_DEFAULT_SHIFT = 3.0


def encode_prompts_sd3(model: str, prompts: Sequence[str], max_sequence_length: int,
                       transformer, vae, no_t5: bool):
    """(embeds [N+1, L, D], pooled [N+1, P]) for the prompts then the empty prompt, as
    StableDiffusion3Pipeline.encode_prompt makes them: its text encoders are loaded from
    `model`, the already loaded transformer and VAE are reused. `no_t5`: without the T5 encoder
    (text_encoder_3=None: the pipeline then uses zeros for the T5 tokens, as SD3 allows)."""
    torch = import_torch()
    from diffusers import StableDiffusion3Pipeline

    extra = {"text_encoder_3": None, "tokenizer_3": None} if no_t5 else {}
    try:
        pipe = StableDiffusion3Pipeline.from_pretrained(model, transformer=transformer, vae=vae, **extra)
    except (OSError, ValueError, EnvironmentError) as e:
        fail(f"could not load the text encoders of {model}: {str(e).splitlines()[0]}\n" + hub_hint(model))
    with torch.no_grad():
        emb, _, pooled, _ = pipe.encode_prompt(
            prompt=[*prompts, ""], prompt_2=None, prompt_3=None, device="cpu",
            do_classifier_free_guidance=False, max_sequence_length=max_sequence_length)
    return emb.numpy().astype(np.float32), pooled.numpy().astype(np.float32)


def cmd_flow(args: argparse.Namespace) -> None:
    """Exports an SD3-class flow-matching pipeline: transformer, VAE decoder, prompt embeddings.

    SD3's transformer takes two conditions, the token embeddings [L, D] and a pooled embedding
    [P]; s3's conditioning has one input. Both are packed into one [L + 1, D] array per row: rows
    0..L-1 are the token embeddings and row L holds the pooled embedding in its first P entries
    (zeros after); the exported graph splits them again (needs P <= D; SD3: P = 2048, D = 4096).
    """
    torch = import_torch()
    from diffusers import SD3Transformer2DModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tr, vae, what, weights_note, name = load_denoiser_and_vae(
        args, "flow", "sd3", SD3Transformer2DModel, "transformer", "transformer", SD3_TINY_TRANSFORMER,
        SD3_TINY_VAE)
    arch = None if args.tiny else args.model
    tcfg = tr.config
    size = list(args.latent_size) if args.latent_size else [tcfg.sample_size, tcfg.sample_size]
    sample_shape = [tcfg.in_channels, *size]
    if (tcfg.out_channels or tcfg.in_channels) != tcfg.in_channels:
        fail(f"out_channels {tcfg.out_channels} != in_channels {tcfg.in_channels}")
    if vae.config.latent_channels != tcfg.in_channels:
        fail(f"VAE latent_channels {vae.config.latent_channels} != transformer in_channels {tcfg.in_channels}")
    d, p = tcfg.joint_attention_dim, tcfg.pooled_projection_dim
    if p > d:
        fail(f"pooled_projection_dim {p} > joint_attention_dim {d}: the pooled embedding does not fit "
             "in one extra token row")

    # Shift from the scheduler config (FlowMatchEulerDiscreteScheduler's `shift`).
    sched, where = load_scheduler_config(arch)
    shift = args.shift
    if shift is None:
        if sched is not None:
            if sched.get("use_dynamic_shifting"):
                fail(f"{where}: use_dynamic_shifting (a resolution-dependent shift, as in Flux); "
                     "pass the shift to use with --shift")
            shift = float(sched.get("shift", 1.0))
            shift_note = f"shift {shift:g} from {where}"
        else:
            shift = SD3_DEFAULT_SHIFT
            shift_note = f"shift {shift:g} (SD3's default; no scheduler config)"
    else:
        shift_note = f"shift {shift:g} (--shift)"

    # Conditioning: [R, L, D] token embeddings + [R, P] pooled, packed to [R, L + 1, D].
    if args.prompts:
        if args.random_weights:
            fail("--prompts needs the pipeline's text encoders (--model without --random-weights)")
        emb, pooled = encode_prompts_sd3(args.model, args.prompts, args.max_sequence_length,
                                         tr, vae, args.no_t5)
        cond_note = (f"prompts {list(args.prompts)} and the empty prompt encoded by {args.model}'s "
                     f"text encoders{' without T5' if args.no_t5 else ''} "
                     "(StableDiffusion3Pipeline.encode_prompt)")
    elif args.prompt_embeds:
        if not (args.pooled_embeds and args.null_embed and args.null_pooled):
            fail("--prompt-embeds needs --pooled-embeds, --null-embed and --null-pooled")
        emb = load_npy(args.prompt_embeds, "--prompt-embeds", (3,))
        pooled = load_npy(args.pooled_embeds, "--pooled-embeds", (2,))
        null = load_npy(args.null_embed, "--null-embed", (2, 3))
        null_pooled = load_npy(args.null_pooled, "--null-pooled", (1, 2)).reshape(1, -1)
        if null.size != np.prod(emb.shape[1:]):
            fail(f"--null-embed shape {list(null.shape)} does not match one prompt embedding "
                 f"{list(emb.shape[1:])}")
        null = null.reshape(1, *emb.shape[1:])
        emb, pooled = np.concatenate([emb, null]), np.concatenate([pooled, null_pooled])
        cond_note = (f"prompt embeddings {args.prompt_embeds} + pooled {args.pooled_embeds}, null "
                     f"{args.null_embed} + {args.null_pooled}")
    elif args.random_weights:
        rng = np.random.default_rng(args.seed)
        n = args.num_random_prompts
        emb = rng.standard_normal((n + 1, TINY_TEXT_TOKENS, d)).astype(np.float32)
        pooled = rng.standard_normal((n + 1, p)).astype(np.float32)
        cond_note = (f"{n} random N(0, 1) prompt and pooled embeddings and random null ones "
                     f"(numpy seed {args.seed})")
    else:
        fail("flow needs --prompts or --prompt-embeds/--pooled-embeds/--null-embed/--null-pooled")
    if emb.shape[-1] != d or pooled.shape[-1] != p or len(emb) != len(pooled):
        fail(f"embeddings {list(emb.shape)} / pooled {list(pooled.shape)} do not match the "
             f"transformer (joint_attention_dim {d}, pooled_projection_dim {p})")
    tokens = emb.shape[1]
    values = np.zeros((len(emb), tokens + 1, d), dtype=np.float32)
    values[:, :tokens] = emb
    values[:, tokens, :p] = pooled
    cond_note += (f"; conditioning.npy packs each row as [{tokens} + 1, {d}]: the {tokens} token "
                  f"embeddings, then the pooled embedding in the first {p} entries of the last row")

    n_tr = sum(q.numel() for q in tr.parameters())
    n_dec = sum(q.numel() for q in vae.decoder.parameters())
    print(f"{what}: transformer {n_tr:,} parameters, VAE decoder {n_dec:,}; latent {sample_shape}; "
          f"{shift_note}; conditioning {list(values.shape)}")

    class Velocity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tr = tr

        def forward(self, sample, timestep, encoder_hidden_states):
            text = encoder_hidden_states[:, :tokens, :]
            pooled_projections = encoder_hidden_states[:, tokens, :p]
            return self.tr(hidden_states=sample, encoder_hidden_states=text,
                           pooled_projections=pooled_projections, timestep=timestep,
                           return_dict=False)[0]

    wrapper = Velocity().eval()
    onnx_path = out / "model.onnx"
    example = (torch.zeros(2, *sample_shape), torch.tensor([1.0, 1000.0]), torch.from_numpy(values[:2]))
    export_onnx(wrapper, example, onnx_path, ["sample", "timestep", "encoder_hidden_states"], ["out"])
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes)")
    verify_conditional(wrapper, onnx_path, sample_shape, values,
                       [[1.0, 500.0, 1000.0], [250.0]], args.seed)
    decoder, _ = export_decoder(vae, out, sample_shape, args.seed)
    conditioning = write_conditioning(
        out, values, prompt_rows(args), "encoder_hidden_states", args.guidance_scale,
        {"packing": f"each row is [{tokens} + 1, {d}]: token embeddings in rows 0..{tokens - 1}, "
                    f"the pooled embedding in row {tokens}, entries 0..{p - 1}"})
    sf = getattr(vae.config, "shift_factor", None)
    source = (f"{what} (transformer {n_tr:,} parameters, VAE decoder {n_dec:,}), {weights_note}; "
              f"velocity (flow matching, x_t = (1 - t) x0 + t eps, timestep = 1000 t), {shift_note}; "
              f"conditioning: {cond_note}; decoder = clamp(vae.decode(z / "
              f"{vae.config.scaling_factor:g}{f' + {sf:g}' if sf is not None else ''}), -1, 1); "
              f"exported with torch {torch.__version__}, diffusers {diffusers_version()} "
              f"(opset {OPSET}) by `{command_line()}`")
    config = base_model_config(name, {"sample": "sample", "time": "timestep"}, sample_shape,
                               "velocity", {"name": "flow", "shift": float(shift)}, FLOW_TIME, source)
    config["decoder"] = decoder
    config["conditioning"] = conditioning
    add_fid(config, args, out)
    write_json(out / "model.json", config)
    print(f"wrote {out / 'model.json'}")
    print_written(out)



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

    def model_args(sp, model_help: str) -> None:
        sp.add_argument("--model", default=None, help=model_help)
        sp.add_argument("--out", required=True, help="output folder (created if missing)")
        sp.add_argument("--random-weights", action="store_true",
                        help="random weights, offline: with --tiny a tiny model of the same class; "
                             "without it the architecture of --model's config.json files")
        sp.add_argument("--tiny", action="store_true",
                        help="with --random-weights: a tiny model of the same class (CI fixtures)")
        sp.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed for random weights, random embeddings and test inputs")
        sp.add_argument("--name", default=None, help="the config's name (default: the model folder's name)")
        sp.add_argument("--fid", nargs=2, default=None, metavar=("EXTRACTOR_JSON", "STATS_NPZ"),
                        help="write model.json's fid entry: an s3-feature-extractor config and "
                             "reference statistics, paths relative to --out (made with the "
                             "inception and cifar10-stats subcommands)")

    def vp_args(sp) -> None:
        sp.add_argument("--prediction-type", choices=list(PREDICTION_TYPES), default=None,
                        help="override the scheduler config's prediction_type (epsilon -> eps, "
                             "sample -> x0, v_prediction -> v)")
        sp.add_argument("--beta-schedule", choices=list(S3_BETAS), default=None,
                        help="override the scheduler config's beta_schedule")

    def cond_args(sp, guidance: float) -> None:
        sp.add_argument("--prompts", nargs="+", default=None, metavar="PROMPT",
                        help="prompts to encode with the pipeline's text encoder(s), one argument "
                             "each (the empty prompt is added as the null row)")
        sp.add_argument("--prompt-embeds", default=None, metavar="EMB.npy",
                        help="precomputed prompt embeddings, float [N, L, D]")
        sp.add_argument("--null-embed", default=None, metavar="NULL.npy",
                        help="with --prompt-embeds: the unconditional embedding [L, D] (e.g. of the "
                             "empty prompt), the last conditioning row")
        sp.add_argument("--guidance-scale", type=float, default=guidance,
                        help=f"classifier-free guidance scale w written to model.json (default {guidance:g}; "
                             "1 = conditional pass only)")
        sp.add_argument("--num-random-prompts", type=int, default=2,
                        help="with --random-weights and no embeddings: how many random prompt "
                             "embeddings to write (default 2), plus a random null row")
        sp.add_argument("--latent-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="latent height and width (default: the network config's sample_size)")

    px = sub.add_parser(
        "pixel",
        help="export any diffusers UNet2DModel (pixel space; eps/x0/v, vp-discrete betas)",
        description="Export a diffusers UNet2DModel checkpoint (folder or hub id; its U-Net at the "
                    "root or in unet/) to DIR/model.onnx (inputs sample [B,C,H,W] and timestep [B], "
                    "output out) and DIR/model.json, reading scheduler_config.json (root or "
                    "scheduler/) for the betas and prediction_type; then check ONNX Runtime "
                    "against torch.",
    )
    model_args(px, "UNet2DModel folder or hub id (e.g. google/ddpm-cifar10-32, google/ddpm-celebahq-256)")
    px.add_argument("--subfolder", default=None, help="subfolder holding the U-Net (default: root, else unet)")
    vp_args(px)
    px.set_defaults(func=cmd_pixel)

    sd = sub.add_parser(
        "sd",
        help="export a Stable-Diffusion-class pipeline: U-Net, VAE decoder, prompt embeddings",
        description="Export a Stable Diffusion 1.x/2.x pipeline (folder or hub id): unet/ "
                    "(UNet2DConditionModel) to DIR/model.onnx (inputs sample, timestep, "
                    "encoder_hidden_states; output out), vae/ (AutoencoderKL) to DIR/decoder.onnx "
                    "(decode(latent / scaling_factor) clamped to [-1,1]), the prompt embeddings "
                    "plus the null (empty-prompt) embedding to DIR/conditioning.npy, and "
                    "DIR/model.json (vp-discrete betas and prediction_type from scheduler/).",
    )
    model_args(sd, "pipeline folder or hub id with unet/, vae/, scheduler/ (and text_encoder/, "
                   "tokenizer/ for --prompts)")
    vp_args(sd)
    cond_args(sd, 7.5)
    sd.set_defaults(func=cmd_sd)

    fl = sub.add_parser(
        "flow",
        help="export an SD3-class flow-matching pipeline: transformer, VAE decoder, prompt embeddings",
        description="Export a Stable Diffusion 3 pipeline (folder or hub id): transformer/ "
                    "(SD3Transformer2DModel, velocity) to DIR/model.onnx (inputs sample, timestep "
                    "= 1000 t, encoder_hidden_states = token embeddings with the pooled embedding "
                    "packed as one extra row; output out), vae/ to DIR/decoder.onnx "
                    "(decode(latent / scaling_factor + shift_factor) clamped to [-1,1]), "
                    "DIR/conditioning.npy and DIR/model.json (flow schedule with the scheduler's shift).",
    )
    model_args(fl, "pipeline folder or hub id with transformer/, vae/, scheduler/ (and the text "
                   "encoders for --prompts), e.g. stabilityai/stable-diffusion-3-medium-diffusers")
    cond_args(fl, 7.0)
    fl.add_argument("--pooled-embeds", default=None, metavar="POOLED.npy",
                    help="with --prompt-embeds: pooled embeddings [N, P]")
    fl.add_argument("--null-pooled", default=None, metavar="NULLP.npy",
                    help="with --prompt-embeds: the null pooled embedding [P]")
    fl.add_argument("--shift", type=float, default=None,
                    help="the flow schedule's shift (default: the scheduler config's `shift`, "
                         f"else {SD3_DEFAULT_SHIFT:g})")
    fl.add_argument("--max-sequence-length", type=int, default=256,
                    help="with --prompts: T5 tokens (StableDiffusion3Pipeline's max_sequence_length)")
    fl.add_argument("--no-t5", action="store_true",
                    help="with --prompts: do not load the T5 text encoder (text_encoder_3=None; "
                         "its tokens are zeros, as the SD3 pipeline allows)")
    fl.set_defaults(func=cmd_flow)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
