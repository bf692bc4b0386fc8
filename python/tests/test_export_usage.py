"""The usage lines of ``s3 export --format diffusers`` and the k-diffusion "Use:" note, run
verbatim on exports the real ``s3`` binary writes (``s3 baselines --emit``, then ``s3 export``).

- ``usage_ddpm_pipeline`` in diffusers' ``DDPMPipeline`` with a tiny random ``UNet2DModel``
  (timesteps, VP sigmas, both flow schedulers), EDM refused with a clear error;
- ``usage`` in ``StableDiffusionPipeline`` with tiny random components built offline
  (timesteps, VP sigmas, EDM's sigma ramp);
- each against the hinted diffusers scheduler run by hand (``set_timesteps`` with the export's
  list, ``init_noise_sigma``, ``scale_model_input``, ``step``): the UNet is called NFE times,
  at the export's timesteps, on the same inputs, and ends at the same latents;
- the k-diffusion note's statements with k-diffusion's ``DiscreteEpsDDPMDenoiser`` around the
  UNet, against s3's own run of the schedule (``s3schedule.run``).

The binary is ``$S3_BIN``, else the newer of ``target/release/s3`` (``cargo build
--release``) and ``target/debug/s3``; without one the tests fail saying so.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import require

torch = require("torch")
require("diffusers")
require("transformers")
import diffusers  # noqa: E402
from diffusers import (AutoencoderKL, DDPMPipeline, DDPMScheduler,  # noqa: E402
                       StableDiffusionPipeline, UNet2DConditionModel)

import s3schedule as s3s  # noqa: E402
from s3schedule import RunError, ScheduleError  # noqa: E402
from s3schedule.diffusers import pin, scheduler_from_export  # noqa: E402
from test_diffusers import tiny_unet  # noqa: E402
from test_k_diffusion import k_external  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
NFE = 5

# name: (noise schedule, the `s3 baselines --emit` file exported)
CASES = {
    "vp-discrete": ("vp-discrete", "dpm-solver++-2M_trailing.json"),
    "vp-linear": ("vp-linear", "ddim_time-uniform.json"),
    "edm": ("edm", "ddim_karras-rho-7.json"),
    "flow-euler": ("flow", "ddim_flow-euler.json"),
    "flow-unipc": ("flow", "unipc-bh2-3_flow-unipc.json"),
}


def s3_binary() -> pathlib.Path:
    env = os.environ.get("S3_BIN")
    if env:
        if not pathlib.Path(env).is_file():
            pytest.fail(f"S3_BIN={env} is not a file", pytrace=False)
        return pathlib.Path(env)
    builds = [p for p in (REPO / "target" / b / "s3" for b in ("release", "debug")) if p.is_file()]
    if builds:  # the newest: the other may be left over from an older checkout
        return max(builds, key=lambda p: p.stat().st_mtime)
    pytest.fail(f"the s3 binary is missing ({REPO / 'target/release/s3'}): run `cargo build "
                "--release` or set S3_BIN", pytrace=False)


def s3(*args) -> str:
    """Runs the s3 binary; returns its stderr (where the export notes go)."""
    cmd = [str(s3_binary()), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr}", pytrace=False)
    return done.stderr


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> (path, parsed JSON) of each case's diffusers export, plus "k-diffusion": the
    k-diffusion export of a vp-discrete DDIM schedule with its notes."""
    root = tmp_path_factory.mktemp("exports")
    for ns in sorted({ns for ns, _ in CASES.values()}):
        s3("baselines", "--nfe", NFE, "--noise-schedule", ns, "--samples", 8,
           "--emit", root / ns)
    out = {}
    for name, (ns, file) in CASES.items():
        path = root / f"{name}.json"
        s3("export", root / ns / file, "--format", "diffusers", "--noise-schedule", ns,
           "--out", path)
        out[name] = (str(path), json.loads(path.read_text()))
    schedule = root / "vp-discrete" / "ddim_trailing.json"
    path = root / "k-diffusion.json"
    notes = s3("export", schedule, "--format", "k-diffusion", "--noise-schedule", "vp-discrete",
               "--out", path)
    out["k-diffusion"] = (str(path), str(schedule), notes)
    return out


class Calls:
    """Records every UNet call: its input sample and timestep."""

    def __init__(self, unet):
        self.inputs, self.times = [], []
        unet.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        self.inputs.append(sample.detach().clone())
        self.times.append(float(torch.as_tensor(t).flatten()[0]))

    def clear(self):
        self.inputs.clear()
        self.times.clear()


def run_usage(lines, **names):
    """Executes ``lines`` as written, in order, with ``names`` bound; the final ``step()``
    result (the pipeline's last latents) is recorded before the last line (the pipeline call)
    runs. Returns (namespace, final latents)."""
    ns = dict(names)
    exec("\n".join(lines[:-1]), ns)
    final = []
    step = ns["pipe"].scheduler.step

    def recording_step(*args, **kwargs):
        out = step(*args, **kwargs)
        final[:] = [out.prev_sample if hasattr(out, "prev_sample") else out[0]]
        return out

    ns["pipe"].scheduler.step = recording_step
    exec(lines[-1], ns)
    return ns, final[0]


def hinted_scheduler(doc, config):
    """diffusers' own scheduler of the hint, set to the export's list as the docs say."""
    hint = doc["scheduler_hint"]
    sched = getattr(diffusers, hint["class"]).from_config(config, **hint["config"])
    if "timesteps" in doc:
        sched.set_timesteps(timesteps=doc["timesteps"])
    elif "sigma_ramp" in doc:
        sched.set_timesteps(sigmas=torch.tensor(doc["sigma_ramp"], dtype=torch.float64))
    else:
        sched.set_timesteps(sigmas=np.array(doc["sigmas"]))
    return sched


@torch.no_grad()
def hand_loop(sched, model, z):
    """The denoising loop of a pipeline that applies everything: x_T = z·init_noise_sigma,
    the model at scale_model_input(x), one step() per timestep. Returns (model inputs, x)."""
    x = z * getattr(sched, "init_noise_sigma", 1.0)  # flow schedulers have none: x_T = z
    inputs = []
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
        inputs.append(inp)
        x = sched.step(model(inp, t), t, x).prev_sample
    return inputs, x


def assert_close(got, want, what, rtol=1e-5):
    got, want = (torch.as_tensor(v).detach().double().numpy() for v in (got, want))
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
    assert got.shape == want.shape and err < rtol, f"{what}: relative error {err:.3g}"


def assert_list_is_the_exports(sched, doc):
    """The scheduler's timesteps (or sigmas, then 0) are the export's list."""
    if "timesteps" in doc:
        assert sched.timesteps.tolist() == doc["timesteps"]
        return
    want = doc["sigmas"] + ([0.0] if doc["noise_schedule"]["name"] == "flow" else [])
    np.testing.assert_allclose(sched.sigmas.double().numpy(), want, rtol=1e-6, atol=0)


# --- DDPMPipeline: usage_ddpm_pipeline ------------------------------------------------------

def ddpm_pipeline():
    unet = tiny_unet()
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe, Calls(unet)


@pytest.mark.parametrize("name", ["vp-discrete", "vp-linear", "flow-euler", "flow-unipc"])
def test_usage_ddpm_pipeline_runs_verbatim_in_ddpm_pipeline(exports, name):
    path, doc = exports[name]
    pipe, calls = ddpm_pipeline()
    config = pipe.scheduler.config
    torch.manual_seed(11)
    ns, final = run_usage(doc["usage_ddpm_pipeline"], pipe=pipe, path_to_this_file=path,
                          prompt="unused")
    assert type(pipe.scheduler).__name__ == "Pinned" + doc["scheduler_hint"]["class"]
    assert ns["image"].size == (8, 8)
    hand = hinted_scheduler(doc, config)
    assert_list_is_the_exports(hand, doc)
    assert len(calls.times) == NFE == len(hand.timesteps)
    np.testing.assert_allclose(calls.times, hand.timesteps.double().numpy(), rtol=1e-6)
    if "timesteps" in doc:
        assert calls.times == doc["timesteps"]
    got_inputs = list(calls.inputs)
    calls.clear()
    torch.manual_seed(11)
    z = torch.randn(1, 2, 8, 8)
    want_inputs, want = hand_loop(hand, lambda x, t: pipe.unet(x, t).sample, z)
    for k, (g, w) in enumerate(zip(got_inputs, want_inputs)):
        assert_close(g, w, f"UNet input {k}")
    assert_close(final, want, "final latents")


def test_a_pinned_scheduler_refuses_other_step_counts_and_lists(exports):
    path, doc = exports["vp-discrete"]
    pipe, calls = ddpm_pipeline()
    pipe.scheduler = scheduler_from_export(path, pipe.scheduler.config)
    with pytest.raises(ValueError, match=r"pinned to the 5 timesteps of .*vp-discrete.json "
                       r"\(timesteps\), 5 model calls; call the pipeline with "
                       r"num_inference_steps=5 \(got 1000\)"):
        pipe()  # DDPMPipeline's default: 1000 steps
    with pytest.raises(ValueError, match=r"passed other timesteps= \(4 values: 999, 500"):
        pipe.scheduler.set_timesteps(timesteps=[999, 500, 300, 100])
    with pytest.raises(ValueError, match="begin_index must be 0"):
        pipe.scheduler.set_begin_index(2)
    pipe.scheduler.set_timesteps(timesteps=doc["timesteps"])  # its own list is fine
    assert calls.times == []
    # pin() on a scheduler instance does the same.
    euler = pin(diffusers.EulerDiscreteScheduler(), sigmas=[10.0, 1.0, 0.0])
    assert euler.init_noise_sigma == 1.0 and len(euler.timesteps) == 2
    with pytest.raises(ValueError, match="num_inference_steps=2 \\(got 3\\)"):
        euler.set_timesteps(3)


def test_export_files_are_checked_with_the_file_and_field_named(exports, tmp_path):
    path, doc = exports["vp-discrete"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "format": "s3-schedule"}))
    with pytest.raises(ScheduleError, match=r"bad.json: field format: expected "
                       r"'s3-diffusers-export'"):
        scheduler_from_export(bad, DDPMScheduler().config)
    hint = {**doc["scheduler_hint"], "class": "NoSuchScheduler"}
    with pytest.raises(ScheduleError, match=r"the export: field scheduler_hint.class: "
                       r"'NoSuchScheduler' is not a scheduler class"):
        scheduler_from_export({**doc, "scheduler_hint": hint}, DDPMScheduler().config)
    listless = {k: v for k, v in doc.items() if k != "timesteps"}
    with pytest.raises(ScheduleError, match="the export: field sigmas is missing"):
        scheduler_from_export(listless, DDPMScheduler().config)
    with pytest.raises(ScheduleError, match=r"missing.json: cannot read the export"):
        scheduler_from_export(tmp_path / "missing.json", DDPMScheduler().config)


def test_edm_exports_are_refused_in_ddpm_pipeline(exports):
    path, doc = exports["edm"]
    assert "usage_ddpm_pipeline" not in doc
    assert any("DDPMPipeline cannot run these sigmas" in n for n in doc["notes"])
    pipe, calls = ddpm_pipeline()
    pipe.scheduler = scheduler_from_export(path, pipe.scheduler.config)
    with pytest.raises(RunError, match=r"without scale_model_input\(\).*\(e.g. DDPMPipeline\) "
                       "cannot run EDM sigmas"):
        pipe(num_inference_steps=NFE)
    assert len(calls.times) == 1  # refused at the first step()


# --- StableDiffusionPipeline: usage ---------------------------------------------------------

def stable_diffusion(tmp_path):
    """A StableDiffusionPipeline of tiny random components, built offline: a CLIP tokenizer
    over a character vocabulary, a one-layer CLIP text encoder, a two-block conditional UNet
    and a one-block VAE (8×8 images, latents 4×8×8)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                              model_max_length=8)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=8, projection_dim=8, bos_token_id=0,
        eos_token_id=1, pad_token_id=1)).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 8), norm_num_groups=4, cross_attention_dim=8,
        attention_head_dim=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=8,
                        block_out_channels=(8,), norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",)).eval()
    scheduler = DDPMScheduler(steps_offset=1, clip_sample=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe, Calls(unet)


@pytest.mark.parametrize("name", ["vp-discrete", "vp-linear", "edm"])
def test_usage_runs_verbatim_in_stable_diffusion(exports, name, tmp_path):
    path, doc = exports[name]
    pipe, calls = stable_diffusion(tmp_path)
    config = pipe.scheduler.config
    prompt = "a cat"
    torch.manual_seed(5)
    ns, final = run_usage(doc["usage"], pipe=pipe, path_to_this_file=path, prompt=prompt)
    assert ns["image"].size == (8, 8)
    hand = hinted_scheduler(doc, config)
    assert_list_is_the_exports(hand, doc)
    assert len(calls.times) == NFE == len(hand.timesteps)
    np.testing.assert_allclose(calls.times, hand.timesteps.double().numpy(), rtol=1e-6)
    if "timesteps" in doc:
        assert calls.times == doc["timesteps"]
    if name == "edm":  # σ_max = σ_0 in the hint: the latents start at z·√(σ_0² + 1)
        assert hand.init_noise_sigma == pytest.approx((doc["sigmas"][0] ** 2 + 1) ** 0.5)
    if name == "vp-linear":  # timestep_spacing "leading" in the hint: the same for Euler
        assert float(hand.init_noise_sigma) == pytest.approx((doc["sigmas"][0] ** 2 + 1) ** 0.5)
    got_inputs = list(calls.inputs)
    calls.clear()

    # Stable Diffusion's loop by hand: classifier-free guidance at its default scale 7.5.
    cond, uncond = pipe.encode_prompt(prompt, torch.device("cpu"), 1, True)
    embeds = torch.cat([uncond, cond])

    def guided(x, t):
        eps = pipe.unet(x, t, encoder_hidden_states=embeds).sample
        e_uncond, e_cond = eps.chunk(2)
        return e_uncond + 7.5 * (e_cond - e_uncond)

    torch.manual_seed(5)
    z = torch.randn(1, 4, 8, 8)
    want_inputs, want = hand_loop(
        hand, lambda x, t: guided(torch.cat([x] * 2), t), z)
    # hand_loop scaled the single latents; the pipeline scales the doubled batch.
    for k, (g, w) in enumerate(zip(got_inputs, want_inputs)):
        assert_close(g, torch.cat([w] * 2), f"UNet input {k}")
    assert_close(final, want, "final latents")


# --- k-diffusion: the "Use:" note -----------------------------------------------------------

def test_k_diffusion_note_runs_with_discrete_eps_ddpm_denoiser(exports):
    path, schedule, notes = exports["k-diffusion"]
    use = next(line for line in notes.splitlines() if line.startswith("note: Use: "))
    assert "DiscreteEpsDDPMDenoiser" in use and "not CompVisDenoiser" in use, use
    statements = re.findall(r"`(\w+ = [^`]+)`", use)
    assert [s.split(" = ")[0] for s in statements] == ["sigmas", "model", "x"], use
    k_external()
    import importlib

    importlib.import_module("k_diffusion.sampling")
    unet = tiny_unet()
    calls = Calls(unet)
    shape = (1, 2, 8, 8)
    torch.manual_seed(3)
    ns = {"json": json, "torch": torch, "k_diffusion": sys.modules["k_diffusion"],
          "FILE": path, "device": "cpu", "shape": shape, "unet": unet,
          "alphas_cumprod": DDPMScheduler().alphas_cumprod}
    for statement in statements:
        exec(statement, ns)
    sched = s3s.load(schedule)
    assert len(calls.times) == sched.nfe == NFE
    want_times = [1000 * t - 1 for t in sched.timesteps[:NFE]]
    np.testing.assert_allclose(calls.times, want_times, atol=1e-3)
    torch.manual_seed(3)
    z = torch.randn(shape)
    with torch.no_grad():
        want = s3s.run(sched, lambda x, t: unet(x, t).sample, z,
                       model_time=lambda p: 1000 * p.t - 1)
    assert_close(ns["x"], want, "k-diffusion's result vs s3's run", rtol=1e-4)


def test_time_offsets_survive_the_s3_format_and_are_noted_as_lost_by_plain_lists(tmp_path):
    """`s3 export FILE --format s3` keeps `time_offsets` (the package runs them); the plain
    lists drop them and their notes say so."""
    from helpers import fixture as data_fixture
    from helpers import with_offsets

    src = tmp_path / "shifted.json"
    src.write_text(json.dumps(with_offsets("vp-discrete_unipc-bh2-3_logsnr.json")))
    out = tmp_path / "out.json"
    s3("export", src, "--format", "s3", "--out", out)
    back, orig = s3s.load(out), s3s.load(src)
    assert back.time_offsets == pytest.approx(orig.time_offsets, rel=1e-15)
    assert back.has_time_offsets and back.steps == orig.steps
    for fmt in ["diffusers", "k-diffusion", "comfyui"]:
        notes = s3("export", src, "--format", fmt, "--out", tmp_path / f"plain-{fmt}")
        assert ("the model-time offsets (steps 0, 1, 2, 3, 4: s3 tells the model t + δ there"
                in notes and "the gain they bring is lost" in notes), notes
    plain = s3("export", data_fixture("vp-discrete_unipc-bh2-3_logsnr.json"), "--format",
               "k-diffusion", "--out", tmp_path / "plain.json")
    assert "offsets" not in plain, plain
