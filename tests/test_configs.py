"""The Hydra configs compose for every variant, trainer and launcher, and hold REFERENCE.md's facts."""

from __future__ import annotations

import pytest
from conftest import CONF_DIR, VARIANTS
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from convnextpose_eval.config.schema import Strategy, register_schema

# REFERENCE.md section 2 and 5, restated here so the configs are checked against the source, not themselves.
TABLE = {
    "XS": ((2, 2, 6, 2), (40, 80, 160, 320), 128, (True, True, False), 32, 56.61, None),
    "S": ((3, 3, 9, 3), (48, 96, 192, 384), 256, (True, True, False), 32, 51.80, None),
    "M": ((3, 3, 9, 3), (48, 96, 192, 384), 256, (True, True, True), 64, 51.05, 34.5),
    "L": ((3, 3, 9, 3), (48, 96, 192, 384), 512, (True, True, True), 64, 49.75, 32.8),
}


@pytest.fixture
def compose_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(tmp_path))
    register_schema()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda *overrides: compose(config_name="eval", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_configs_match_the_paper(compose_eval, variant):
    cfg = compose_eval(f"variant={variant}", "data.root=/data")
    depths, dims, head, upsample, depth_dim, p2, p1 = TABLE[variant]
    assert tuple(cfg.variant.backbone.depths) == depths and tuple(cfg.variant.backbone.dims) == dims
    assert cfg.variant.head.channels == head and tuple(cfg.variant.head.upsample) == upsample
    assert cfg.variant.depth_dim == depth_dim and cfg.variant.joint_num == 18
    assert cfg.variant.paper.mpjpe_p2 == p2 and cfg.variant.paper.pa_mpjpe_p1 == p1
    assert cfg.variant.checkpoint.file == f"ConvNeXtPose_{variant}.tar"


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_every_trainer_composes(compose_eval, trainer):
    cfg = compose_eval(f"trainer={trainer}", "variant=XS", "data.root=/data")
    assert {"accelerator", "devices", "num_nodes", "strategy", "precision"} <= set(cfg.trainer)
    assert (cfg.trainer.strategy is Strategy.ddp) == (trainer == "ddp")
    assert cfg.trainer.tf32 is False


def test_paths_follow_the_project_root(compose_eval, tmp_path):
    cfg = compose_eval("variant=L", "data.root=/data")
    assert str(cfg.paths.checkpoint_dir) == f"{tmp_path}/outputs/checkpoints"
    assert str(cfg.data.crop_cache_dir).startswith(str(tmp_path))


def test_demo_experiment_sweeps_all_variants_on_the_sample(compose_eval, tmp_path):
    cfg = compose_eval("experiment=demo")
    assert cfg.data.synthetic is True and str(cfg.data.root) == f"{tmp_path}/outputs/sample"
    assert str(cfg.data.checkpoint_dir) == f"{tmp_path}/outputs/sample/checkpoints"
    assert cfg.hydra.sweeper.params.variant == "XS,S,M,L"


def test_slurm_launcher_asks_one_task_per_device(compose_eval):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_eval("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "variant=L", "data.root=/d")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == 4 and launcher["gpus_per_node"] == 4 and launcher["nodes"] == 2
