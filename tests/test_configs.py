"""The real configuration, composed as ``run_eval.py`` composes it: docs/protocol.md's facts, typed overrides,
the up-front checks, and the shipped package data."""

from __future__ import annotations

import importlib.resources
import socket
from pathlib import Path

import pytest
from conftest import LEGACY_HEAD_KEYS, VARIANTS
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from convnextpose_eval.common.errors import ConfigError, EvalError
from convnextpose_eval.config.checks import checked_config, quote_home_paths
from convnextpose_eval.config.compose import composition_error

# docs/protocol.md, "The four architectures" and "The paper's figures and the bands", restated here so the configs are checked against the source, not themselves:
# depths, dims, head channels, upsampling, depth_dim, paper MPJPE P2, paper PA-MPJPE P1, epoch in the file.
TABLE = {
    "XS": ((2, 2, 6, 2), (40, 80, 160, 320), 128, (True, True, False), 32, 56.61, None, 68),
    "S": ((3, 3, 9, 3), (48, 96, 192, 384), 256, (True, True, False), 32, 51.80, None, 67),
    "M": ((3, 3, 9, 3), (48, 96, 192, 384), 256, (True, True, True), 64, 51.05, 34.5, 70),
    "L": ((3, 3, 9, 3), (48, 96, 192, 384), 512, (True, True, True), 64, 49.75, 32.8, 83),
}
FEMTO_L = ((3, 3, 9, 3), (48, 96, 192, 384))  # docs/protocol.md, "The four architectures": S, M and L share this backbone
# Every override that must not compose (Hydra or OmegaConf refuses it while composing).
COMPOSITION_ERRORS = (HydraException, OmegaConfBaseException)


@pytest.fixture
def eval_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CONVNEXTPOSE_EVAL_ROOT for this test: every default path resolves under it."""
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(tmp_path))
    return tmp_path


# --------------------------------------------------------------------------- docs/protocol.md's tables


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_configs_match_the_paper(compose, variant):
    cfg = compose(f"variant={variant}", "data.root=/data")
    depths, dims, head, upsample, depth_dim, p2, p1, epoch = TABLE[variant]
    assert tuple(cfg.variant.backbone.depths) == depths and tuple(cfg.variant.backbone.dims) == dims
    assert cfg.variant.head.channels == head and tuple(cfg.variant.head.upsample) == upsample
    assert cfg.variant.depth_dim == depth_dim and cfg.variant.joint_num == 18 and cfg.variant.input_size == 256
    assert cfg.variant.paper.mpjpe_p2 == p2 and cfg.variant.paper.pa_mpjpe_p1 == p1
    assert cfg.variant.checkpoint.file == f"ConvNeXtPose_{variant}.tar" and cfg.variant.checkpoint.epoch == epoch
    assert (cfg.variant.key_style.value == "legacy") == LEGACY_HEAD_KEYS[variant]


@pytest.mark.parametrize("variant", ["M", "L"])
def test_m_and_l_inherit_the_femto_l_backbone(compose, variant):
    """M and L name S as their base: the backbone they compose to is S's, which is Femto-L."""
    cfg = compose(f"variant={variant}")
    small = compose("variant=S").variant
    assert (tuple(cfg.variant.backbone.depths), tuple(cfg.variant.backbone.dims)) == FEMTO_L
    assert cfg.variant.backbone == small.backbone
    assert cfg.variant.backbone.name == "Femto-L" and cfg.variant.name == variant
    assert cfg.variant.head.kernels == small.head.kernels and cfg.variant.joint_num == small.joint_num
    # The legacy head key names of the M and L files (docs/protocol.md, "Checkpoints"): set in M, inherited by L.
    assert cfg.variant.key_style.value == "legacy" and small.key_style.value == "modern"


def test_released_table_is_the_variant_files(compose, variant_cfgs):
    """``released.<V>`` composes from the same file as ``variant=<V>``: one source for both."""
    for variant in VARIANTS:
        assert variant_cfgs[variant] == OmegaConf.to_container(compose(f"variant={variant}").variant, resolve=True, enum_to_str=True)
        assert variant_cfgs[variant]["head"]["channels"] == TABLE[variant][2]


def test_auto_leaves_the_shape_to_the_checkpoint(auto_variant_cfg):
    assert auto_variant_cfg["name"] == "auto"
    assert auto_variant_cfg["backbone"]["dims"] is None and auto_variant_cfg["head"]["channels"] is None
    assert auto_variant_cfg["depth_dim"] is None and auto_variant_cfg["paper"] is None


# --------------------------------------------------------------------------- typed overrides


@pytest.mark.parametrize("word", ["no", "off", "false", "0", "No", "OFF"])
def test_flip_test_off_words(compose, word):
    cfg = compose(f"flip_test={word}", "data=sample")
    assert cfg.flip_test is False
    assert checked_config(cfg).flip_test is False


@pytest.mark.parametrize("word", ["yes", "on", "true", "1"])
def test_flip_test_on_words(compose, word):
    cfg = compose(f"flip_test={word}", "data=sample")
    assert cfg.flip_test is True
    assert checked_config(cfg).flip_test is True


def test_flip_test_maybe_is_refused(compose):
    with pytest.raises(COMPOSITION_ERRORS):
        compose("flip_test=maybe")
    problem = composition_error(["flip_test=maybe"])
    assert problem is not None and problem.startswith("flip_test: ") and "maybe" in problem and "\n" not in problem


def test_use_gt_info_takes_the_same_words(compose):
    assert compose("data.use_gt_info=no").data.use_gt_info is False
    assert compose("data.use_gt_info=on").data.use_gt_info is True


def test_misspelt_key_is_refused_while_composing():
    problem = composition_error(["flip_tset=false"])
    assert problem is not None and "flip_tset" in problem and "\n" not in problem


def test_a_sweep_is_checked_with_its_first_values():
    assert composition_error(["variant=XS,S", "data.protocol=1,2"]) is None
    problem = composition_error(["flip_test=maybe,true"])
    assert problem is not None and problem.startswith("flip_test: ")


# --------------------------------------------------------------------------- up-front checks


def test_forced_architecture_key_is_refused_by_name(compose):
    """``+variant.head_channels`` adds a key the schema does not have (the real one is variant.head.channels)."""
    cfg = compose("+variant.head_channels=384", "data=sample")
    with pytest.raises(ConfigError) as raised:
        checked_config(cfg)
    message = str(raised.value)
    assert message.startswith("variant.head_channels: ") and "no such setting" in message
    assert isinstance(raised.value, EvalError) and "\n" not in message


@pytest.mark.parametrize(
    "override,expected",
    [
        ("data.batch_size=0", "data.batch_size=0: must be at least 1"),
        ("data.batch_size=-3", "data.batch_size=-3: must be at least 1"),
        ("data.protocol=3", "data.protocol=3: must be 1"),
        ("data.protocol=0", "data.protocol=0: must be 1"),
        ("data.num_workers=-1", "data.num_workers=-1: must be 0 or more"),
        ("trainer.devices=0", "trainer.devices=0: must be at least 1"),
        ("trainer.precision=64", "trainer.precision=64: must be one of"),
    ],
)
def test_out_of_range_values_are_refused(compose, override, expected):
    with pytest.raises(ConfigError) as raised:
        checked_config(compose(override, "data=sample"))
    assert str(raised.value).startswith(expected)


def test_missing_data_root_is_refused_before_any_download(compose, tmp_path, monkeypatch):
    """checked_config runs first in every entry point: a wrong data.root stops the run before a byte is fetched."""
    attempts: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("the configuration check opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    missing = tmp_path / "nonexistent"
    with pytest.raises(ConfigError) as raised:
        checked_config(compose(f"data.root={missing}", "variant=XS", f"paths.root_dir={tmp_path}"))
    assert str(raised.value).startswith(f"{missing}: data root does not exist")
    assert attempts == []
    assert not (tmp_path / "outputs").exists(), "nothing may be created before the data root is known to exist"


def test_unset_data_root_says_how_to_set_it(compose):
    with pytest.raises(ConfigError, match=r"^data\.root is not set: pass data\.root=DIR"):
        checked_config(compose("variant=XS"))


def test_home_paths_are_quoted_then_expanded(compose, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "h36m").mkdir()
    overrides = quote_home_paths(["data.root=~/h36m", "variant=XS"])
    assert overrides[1] == "variant=XS"
    cfg = compose(*overrides)
    assert cfg.data.root == Path("~/h36m")
    assert checked_config(cfg).data.root == tmp_path / "h36m"


def test_checked_paths_are_absolute(compose, eval_root, monkeypatch):
    monkeypatch.chdir(eval_root)
    (eval_root / "data").mkdir()
    settings = checked_config(compose("data.root=data", "variant=S"))
    assert settings.data.root == eval_root / "data"
    assert settings.paths.checkpoint_dir == eval_root / "outputs" / "checkpoints"


@pytest.mark.parametrize("overrides", [("experiment=demo", "variant=XS"), ("experiment=demo", "variant=L", "logger=mlflow", "trainer=ddp"),
                                       ("variant=auto", "data.root=data", "flip_test=false", "backend=onnxruntime")])  # fmt: skip
def test_checked_settings_as_plain_containers_are_what_omegaconf_makes_of_them(compose, eval_root, monkeypatch, overrides):
    """``as_plain`` walks a checked schema object itself; OmegaConf's own conversion of the same object is the
    second implementation it must equal, for the whole config and every released variant."""
    from convnextpose_eval.config.compose import as_plain

    monkeypatch.chdir(eval_root)
    (eval_root / "data").mkdir()
    settings = checked_config(compose(*overrides))

    def omegaconf_plain(node) -> dict:
        return OmegaConf.to_container(OmegaConf.structured(node), resolve=True, enum_to_str=True)

    # repr, not ==: 1 and 1.0, True and 1, a Path and its text must not pass for each other.
    plain = as_plain(settings)
    assert repr(plain) == repr(omegaconf_plain(settings)) and plain["trainer"]["accelerator"] in ("cpu", "gpu", "cuda", "auto")
    assert all(repr(as_plain(node)) == repr(omegaconf_plain(node)) for node in settings.released.values()) and len(settings.released) == 4
    with pytest.raises(TypeError, match="not dict"):
        as_plain({"a": 1})


# --------------------------------------------------------------------------- groups: data, trainers, paths, experiments


def test_sample_data_brings_its_own_checkpoints(compose, eval_root):
    """``data=sample`` alone (no experiment) reads the sample's synthetic-weight checkpoints, never the download cache."""
    cfg = compose("data=sample", "variant=XS")
    settings = checked_config(cfg)
    sample = eval_root / "outputs" / "sample"
    assert settings.data.synthetic is True and settings.data.root == sample
    assert settings.data.checkpoint_dir == sample / "checkpoints"
    assert settings.paths.checkpoint_dir == eval_root / "outputs" / "checkpoints"


def test_real_data_has_no_checkpoints_of_its_own(compose):
    assert compose("data=h36m", "data.root=/data").data.checkpoint_dir is None


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_every_trainer_composes_without_tf32(compose, trainer):
    settings = checked_config(compose(f"trainer={trainer}", "variant=XS", "data=sample"))
    assert settings.trainer.tf32 is False  # docs/protocol.md, "Pitfalls in the stack": TF32 moves results by up to 0.4 mm
    assert settings.trainer.precision == "32-true" and settings.trainer.num_nodes == 1
    assert settings.trainer.strategy.value == ("ddp" if trainer == "ddp" else "auto")
    assert settings.trainer.accelerator.value == {"cpu": "cpu", "gpu": "gpu", "ddp": "auto"}[trainer]
    assert settings.trainer.devices == (2 if trainer == "ddp" else 1)


def test_paths_follow_the_project_root(compose, eval_root):
    cfg = compose("variant=L", "data.root=/data")
    assert cfg.paths.checkpoint_dir == eval_root / "outputs" / "checkpoints"
    assert cfg.data.crop_cache_dir == eval_root / "outputs" / "cache" / "crops"


def test_demo_experiment_sweeps_all_variants_on_the_sample(compose, eval_root):
    cfg = compose("experiment=demo", hydra=True)
    assert cfg.data.synthetic is True and cfg.data.root == eval_root / "outputs" / "sample"
    assert cfg.data.checkpoint_dir == eval_root / "outputs" / "sample" / "checkpoints"
    assert cfg.hydra.sweeper.params.variant == "XS,S,M,L"
    assert checked_config(cfg).variant.name == "auto"  # a single run without variant=... takes it from the file


def test_two_runs_started_in_the_same_second_get_different_default_folders(compose, eval_root):
    """Two runs started in one second must not share a folder: the default name carries microseconds."""
    import time

    folders = []
    for _ in range(2):
        cfg = compose("variant=L", "data.root=/data", hydra=True)
        folders.append(Path(OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]))
        time.sleep(0.002)
    assert folders[0] != folders[1]
    assert folders[0].parent == folders[1].parent == eval_root / "outputs" / "runs"
    assert folders[0].name.endswith("_L") and folders[0].name[:19] <= folders[1].name[:19]


def test_slurm_launcher_asks_one_task_per_device(compose):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose("hydra/launcher=slurm", "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=4", "trainer.num_nodes=2",
                  "variant=L", "data.root=/d", hydra=True)  # fmt: skip
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == 4 and launcher["gpus_per_node"] == 4 and launcher["nodes"] == 2


# --------------------------------------------------------------------------- the shipped package


def test_configs_ship_inside_the_package():
    """Found through importlib.resources, as from an installed wheel, not through the checkout's path."""
    conf = importlib.resources.files("convnextpose_eval.conf")
    assert (conf / "eval.yaml").is_file()
    for group, names in {"variant": (*VARIANTS, "auto"), "data": ("h36m", "sample"), "trainer": ("cpu", "gpu", "ddp"),
                         "experiment": ("demo",), "hydra": ()}.items():  # fmt: skip
        assert (conf / group).is_dir(), group
        for name in names:
            assert (conf / group / f"{name}.yaml").is_file(), f"{group}/{name}.yaml"
    assert (conf / "hydra" / "help" / "eval.yaml").is_file()


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (("backend=onnxruntime", "onnx_path=/nonexistent/x.onnx"), "/nonexistent/x.onnx: no such file or directory (onnx_path)"),
        (("backend=onnxruntime", "onnx_path=.", "oracle=true"), "oracle=true takes no network"),
        (("backend=onnxruntime", "onnx_path=.", "trainer.precision=bf16-mixed"), "backend=onnxruntime runs the exported float32 graph"),
        (("backend=onnxruntime", "onnx_path=.", "trainer.tf32=true"), "backend=onnxruntime runs the exported float32 graph"),
    ],
)
def test_onnx_runs_are_checked_before_anything_is_read(compose, overrides, expected):
    with pytest.raises(ConfigError) as raised:
        checked_config(compose(*overrides, "data=sample"))
    assert str(raised.value).startswith(expected)


def test_onnx_settings_are_typed(compose):
    settings = checked_config(compose("backend=onnxruntime", "onnx_path=.", "onnx_provider=cuda", "data=sample"))
    assert settings.backend.value == "onnxruntime" and settings.onnx_provider.value == "cuda"
    assert settings.onnx_path is not None and settings.onnx_path.is_absolute()
    with pytest.raises(Exception, match="onnx_provider"):
        compose("onnx_provider=tensorrt")
