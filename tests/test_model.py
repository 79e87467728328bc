"""The network against docs/protocol.md ("The four architectures"): sizes, MACs, heatmap geometry, soft-argmax, config overrides."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CONF_DIR, VARIANTS
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from convnextpose_eval.network import (
    ArchSpec,
    ConvNeXtPose,
    count_macs,
    count_parameters,
    moment_table,
    soft_argmax_3d,
    soft_argmax_3d_moments,
)

# docs/protocol.md, "The four architectures" (parameters measured by building the network) and the paper.
PARAMS = {"XS": 3_528_008, "S": 7_438_976, "M": 7_587_008, "L": 8_380_352}
PAPER_GFLOPS = {"XS": 0.82, "S": 1.76, "M": 2.82, "L": 4.30}
TORCH_COUNTER_GMACS = {"XS": 0.815, "S": 1.738, "M": 2.795, "L": 4.264}  # FlopCounterMode / 2, per REFERENCE
HEATMAP_SIDE = {"XS": 32, "S": 32, "M": 64, "L": 64}
DEPTH_DIM = {"XS": 32, "S": 32, "M": 64, "L": 64}
JOINTS = 18


def hand_macs(spec: ArchSpec) -> int:
    """Multiply-accumulates of convolutions only (no bias, BN or upsampling), written from REFERENCE's description."""
    d, size = spec.dims, spec.input_size
    res = size // 4
    macs = res * res * d[0] * 3 * 4 * 4  # stem conv 4x4 stride 4
    for stage, (depth, channels) in enumerate(zip(spec.depths, d)):
        if stage > 0:
            res //= 2
            macs += res * res * channels * d[stage - 1] * 2 * 2  # downsample conv 2x2 stride 2
        per_block = channels * 7 * 7 + channels * 4 * channels + 4 * channels * channels
        macs += depth * per_block * res * res
    cin = d[-1]
    for upsample in spec.head_upsample:
        macs += res * res * (cin * 3 * 3 + cin * spec.head_channels)
        cin = spec.head_channels
        if upsample:
            res *= 2
    macs += res * res * cin * spec.joint_num * spec.depth_dim
    return macs


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_count_is_exact(name, source_networks):
    model = source_networks[name]
    assert count_parameters(model) == PARAMS[name]
    # The same number, counted a second way: every stored tensor but BN running statistics.
    stored = sum(t.numel() for k, t in model.state_dict().items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert stored == PARAMS[name]


@pytest.mark.parametrize("name", VARIANTS)
def test_spec_from_variant_config_matches_reference_table(name, variant_cfgs):
    spec = ArchSpec.from_variant(variant_cfgs[name])
    table = {
        "XS": ((2, 2, 6, 2), (40, 80, 160, 320), 128, (True, True, False)),
        "S": ((3, 3, 9, 3), (48, 96, 192, 384), 256, (True, True, False)),
        "M": ((3, 3, 9, 3), (48, 96, 192, 384), 256, (True, True, True)),
        "L": ((3, 3, 9, 3), (48, 96, 192, 384), 512, (True, True, True)),
    }[name]
    assert (spec.depths, spec.dims, spec.head_channels, spec.head_upsample) == table
    assert spec.depth_dim == DEPTH_DIM[name] and spec.joint_num == JOINTS and spec.input_size == 256
    assert spec.heatmap_size == HEATMAP_SIDE[name]


@pytest.fixture(scope="module")
def full_size_runs(source_networks):
    """count_macs once per variant (one 256x256 forward), capturing the heatmap the head produces on the way."""
    runs = {}
    for name in VARIANTS:
        model = source_networks[name]
        seen = []
        hook = model.head.final_layer.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(tuple(out.shape)))
        try:
            macs = count_macs(model)
        finally:
            hook.remove()
        assert len(seen) == 1
        runs[name] = (macs, seen[0])
    return runs


@pytest.mark.parametrize("name", VARIANTS)
def test_gflops_match_paper(name, full_size_runs, known_specs):
    macs, _ = full_size_runs[name]
    gflops = macs / 1e9
    assert gflops == pytest.approx(PAPER_GFLOPS[name], rel=0.03)
    assert gflops == pytest.approx(TORCH_COUNTER_GMACS[name], abs=0.0015)
    assert macs == pytest.approx(hand_macs(known_specs[name]), rel=1e-6)


@pytest.mark.parametrize("name", VARIANTS)
def test_results_count_on_the_meta_device_equals_the_real_forward(name, full_size_runs, source_networks, variant_cfgs, known_specs):
    """results.json's params and GFLOPs are counted without weights; they must equal the real network's."""
    from convnextpose_eval.backends import ForwardSource
    from convnextpose_eval.model.evaluator import PoseEvaluator

    module = PoseEvaluator(ForwardSource(variant=variant_cfgs[name], known=known_specs), "pytorch", oracle=True)
    module.configure_network()
    info = module.model_info()
    assert info["params"] == count_parameters(source_networks[name])
    assert info["gflops"] == round(full_size_runs[name][0] / 1e9, 4)


@pytest.mark.parametrize("name", VARIANTS)
def test_heatmap_side_and_final_channels(name, full_size_runs, source_networks):
    _, shape = full_size_runs[name]
    side = HEATMAP_SIDE[name]
    assert shape == (1, JOINTS * DEPTH_DIM[name], side, side)
    assert source_networks[name].head.final_layer.out_channels == {32: 576, 64: 1152}[DEPTH_DIM[name]]


def test_forward_returns_coordinates_inside_the_volume(source_networks, sample_images):
    # 64x64 input: the stride-32 map is 2x2, so the heatmap is 8x8 (two upsamplings) or 16x16 (three).
    for name, side in (("XS", 8), ("L", 16)):
        with torch.no_grad():
            out = source_networks[name](sample_images)
        assert out.shape == (2, JOINTS, 3)
        upper = torch.tensor([side - 1, side - 1, DEPTH_DIM[name] - 1], dtype=out.dtype)
        assert (out >= 0).all() and (out <= upper).all()


# --------------------------------------------------------------------------- soft-argmax


def einsum_soft_argmax(heatmaps: torch.Tensor, joints: int, depth: int) -> torch.Tensor:
    """Second implementation: explicit coordinate grids and an einsum expectation."""
    b, _, h, w = heatmaps.shape
    logits = heatmaps.double().reshape(b, joints, -1)
    prob = (logits - logits.logsumexp(dim=2, keepdim=True)).exp().reshape(b, joints, depth, h, w)
    zz, yy, xx = torch.meshgrid(torch.arange(depth), torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack((xx, yy, zz)).double()  # (3, D, H, W)
    return torch.einsum("bjdhw,cdhw->bjc", prob, coords)


def loop_soft_argmax(heatmaps: torch.Tensor, joints: int, depth: int) -> list:
    """Third implementation: plain python loops (tiny volumes only)."""
    b, _, h, w = heatmaps.shape
    values = heatmaps.tolist()
    result = []
    for bi in range(b):
        per_joint = []
        for j in range(joints):
            cells = [
                (values[bi][j * depth + z][y][x], x, y, z) for z in range(depth) for y in range(h) for x in range(w)
            ]
            top = max(v for v, *_ in cells)
            weights = [(math.exp(v - top), (x, y, z)) for v, x, y, z in cells]
            total = sum(e for e, _ in weights)
            per_joint.append([sum(e * xyz[axis] for e, xyz in weights) / total for axis in range(3)])
        result.append(per_joint)
    return result


def _moments_form(heatmaps: torch.Tensor, joints: int, depth: int) -> torch.Tensor:
    return soft_argmax_3d_moments(heatmaps, joints, depth, moment_table(heatmaps.shape[2], heatmaps.shape[3]))


# The authors' arrangement (PyTorch engine) and the one-pass arrangement the ONNX export carries.
SOFT_ARGMAX_FORMS = {"marginals": soft_argmax_3d, "moments": _moments_form}


def test_moment_table_lists_each_pixels_x_y_and_one_in_row_major_order():
    assert moment_table(2, 3).tolist() == [[0, 0, 1], [1, 0, 1], [2, 0, 1], [0, 1, 1], [1, 1, 1], [2, 1, 1]]
    assert moment_table(2, 3).dtype == torch.float32


@pytest.mark.parametrize("form", SOFT_ARGMAX_FORMS)
def test_soft_argmax_against_python_loop(form):
    heatmaps = torch.randn(2, 2 * 3, 4, 5, generator=torch.Generator().manual_seed(3)) * 2
    got = SOFT_ARGMAX_FORMS[form](heatmaps, 2, 3)
    assert got.shape == (2, 2, 3)
    assert got.double() == pytest.approx(torch.tensor(loop_soft_argmax(heatmaps, 2, 3), dtype=torch.double), abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2),
    joints=st.integers(1, 4),
    depth=st.integers(1, 6),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    scale=st.floats(0.1, 20.0),
    seed=st.integers(0, 2**16),
)
def test_soft_argmax_against_einsum(batch, joints, depth, height, width, scale, seed):
    heatmaps = torch.randn(batch, joints * depth, height, width, generator=torch.Generator().manual_seed(seed)) * scale
    expected = einsum_soft_argmax(heatmaps, joints, depth)
    for form in SOFT_ARGMAX_FORMS.values():
        assert torch.allclose(form(heatmaps, joints, depth).double(), expected, atol=1e-4)


@pytest.mark.parametrize("form", SOFT_ARGMAX_FORMS)
@pytest.mark.parametrize("peak", [(0, 0, 0), (3, 1, 4), (5, 6, 2), (5, 6, 7)])
def test_soft_argmax_single_peak_gives_its_position(peak, form):
    depth, height, width, joints = 6, 7, 8, 3
    d, y, x = peak
    heatmaps = torch.zeros(1, joints * depth, height, width)
    heatmaps[0, 1 * depth + d, y, x] = 1000.0  # joint 1 only; channel = joint * depth_dim + depth bin
    out = SOFT_ARGMAX_FORMS[form](heatmaps, joints, depth)
    assert out[0, 1].tolist() == pytest.approx([x, y, d], abs=1e-3)
    centre = [(width - 1) / 2, (height - 1) / 2, (depth - 1) / 2]  # flat volume: the expectation is the centre
    assert out[0, 0].tolist() == pytest.approx(centre, abs=1e-4)
    assert out[0, 2].tolist() == pytest.approx(centre, abs=1e-4)


def test_soft_argmax_ignores_a_constant_offset_per_joint():
    heatmaps = torch.randn(1, 2 * 4, 5, 5, generator=torch.Generator().manual_seed(11))
    shifted = heatmaps.clone()
    shifted[:, :4] += 50.0
    assert torch.allclose(soft_argmax_3d(heatmaps, 2, 4), soft_argmax_3d(shifted, 2, 4), atol=1e-5)


# --------------------------------------------------------------------------- Hydra overrides


def _compose_variant(overrides, monkeypatch, tmp_path) -> dict:
    from hydra import compose, initialize_config_dir

    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONF_DIR.resolve()), version_base="1.3", job_name="test_model"):
        cfg = compose(config_name="eval", overrides=overrides)
    assert str(cfg.paths.root_dir) == str(tmp_path)
    return OmegaConf.to_container(cfg.variant, resolve=True)


def test_head_channels_override_reaches_the_network(monkeypatch, tmp_path):
    variant = _compose_variant(["variant=L", "variant.head.channels=384"], monkeypatch, tmp_path)
    spec = ArchSpec.from_variant(variant)
    assert spec.dims == (48, 96, 192, 384) and spec.depth_dim == 64  # the rest of L is untouched
    model = ConvNeXtPose(spec)
    head = model.head
    assert [getattr(head, f"deconv_layers_{i}").pwconv.out_channels for i in (1, 2, 3)] == [384, 384, 384]
    assert head.deconv_layers_2.dwconv.in_channels == 384 and head.final_layer.in_channels == 384
    assert head.final_layer.out_channels == 1152


def test_depth_dim_override_reaches_the_network(monkeypatch, tmp_path):
    variant = _compose_variant(["variant=M", "variant.depth_dim=32"], monkeypatch, tmp_path)
    spec = ArchSpec.from_variant(variant)
    assert spec.depth_dim == 32 and spec.head_channels == 256
    model = ConvNeXtPose(spec)
    assert model.head.final_layer.out_channels == 576


@pytest.mark.parametrize("name", ["XS", "L"])
def test_both_soft_argmax_forms_agree_on_the_networks_own_heatmaps(name, source_networks):
    """The real heatmap sizes (32^3 and 64^3 volumes per joint), where float32 summation order shows most."""
    model = source_networks[name]
    with torch.no_grad():
        heatmaps = model.heatmaps(torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(7)))
        marginals = soft_argmax_3d(heatmaps, JOINTS, DEPTH_DIM[name])
        moments = _moments_form(heatmaps, JOINTS, DEPTH_DIM[name])
        assert torch.equal(model(torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(7))), marginals)
    expected = einsum_soft_argmax(heatmaps, JOINTS, DEPTH_DIM[name])
    # float32 sums of 64^3 = 262,144 terms differ from the float64 reference by up to 3e-4 heatmap units on
    # some CPUs' kernels (measured 2026-12-07; 1e-5 to 1e-4 on others); a wrong formula is off by whole units.
    assert (moments.double() - expected).abs().max() < 1e-3
    assert (marginals.double() - expected).abs().max() < 1e-3
