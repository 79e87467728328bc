"""Shared fixtures: the composed configuration, one randomized network per variant, and released-style checkpoints.

The variant facts come from the real configuration, composed the way ``run_eval.py`` composes it (its
``released`` table), so inheritance between variant files is what the tests see too. The checkpoint
files are written here by hand, the way the authors' files are (docs/protocol.md, "Checkpoints"), not with the
project's own writer: ``torch.save`` of ``{'epoch', 'network', 'optimizer'}`` to ``snapshot_N.pth.tar``
with DataParallel ``module.`` keys, storages re-tagged as saved on ``cuda:0``, legacy head names for
M/L, then renamed to ``ConvNeXtPose_<V>.tar``.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli import PROJECT_ROOT, SESSION_ENV, SESSION_OWNER, SHARED_EXPORTS
from filelock import FileLock
from omegaconf import DictConfig

from convnextpose_eval.config.compose import (
    CONFIG_MODULE,
    CONFIG_NAME,
    as_plain,
    compose_config,
    variant_table,
)
from convnextpose_eval.config.schema import register_schema
from convnextpose_eval.network import ArchSpec, ConvNeXtPose

# --------------------------------------------------------------------------- what CI must not skip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``CI=true`` a test marked ``required_in_ci`` (the local SLURM cluster, the headless browser) that
    skips fails instead: CI installs and starts what they need, so a skip there means CI tested less than it
    claims. On a laptop without them they still skip, saying why."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and item.get_closest_marker("required_in_ci"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: {item.nodeid} must run in CI but skipped: {reason}"


# The checkout's configuration tree (the installed package ships the same files as convnextpose_eval.conf).
CONF_DIR = PROJECT_ROOT / "conf"
VARIANTS = ("XS", "S", "M", "L")
# docs/protocol.md, "The four architectures" and "Checkpoints": the epoch stored in each released file, and which
# use legacy head key names.
RELEASED_EPOCH = {"XS": 68, "S": 67, "M": 70, "L": 83}
LEGACY_HEAD_KEYS = {"XS": False, "S": False, "M": True, "L": True}

_CPU_TAG = b"X\x03\x00\x00\x00cpu"  # protocol-2 BINUNICODE 'cpu'
_CUDA_TAG = b"X\x06\x00\x00\x00cuda:0"


# --------------------------------------------------------------------------- tests side by side


def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-xdist starts its workers (``-n auto --dist loadfile``, pyproject.toml): each worker's
    PyTorch and ONNX Runtime get an equal share of the cores instead of one thread per core each (two
    workers with two threads each on two cores ran every end-to-end test at about half speed), and the
    workers learn which session they belong to, so that they share its ONNX exports and session runs."""
    workers = getattr(config.option, "numprocesses", None) or 0
    if workers and not hasattr(config, "workerinput"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(max(1, cores // workers)))
        os.environ[SESSION_ENV] = str(os.getpid())


# The files that ran longest in the timed runs of docs/testing.md ("What the tests cost"), longest first.
# Under ``--dist loadfile`` files go to the workers in collection order, each whole to one worker, so a long
# file handed out last ends the run on one worker while the other idles (50 s of a 10-minute run, before
# this order). The first two need different session runs (``default_engine_p1``, ``demo_sweep_p1``), so
# the two workers start by making one each instead of one waiting for the other.
LONGEST_FILES = ("test_cluster_runs.py", "test_onnx_eval.py", "test_deploy.py", "test_agreement.py", "test_evaluate.py",
                 "test_onnx_cache.py", "test_untrusted_inputs.py", "test_cli.py", "test_onnx_trust.py", "test_notebook_install.py",
                 "test_results_contract.py")  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first, in LONGEST_FILES' order; every other file after them, as collected."""
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The session's shared ONNX export cache (``cli.SHARED_EXPORTS``) goes with the session that made it
    (under xdist the controller, once every worker is done), not with a worker or a nested pytest."""
    if SESSION_OWNER == str(os.getpid()):
        shutil.rmtree(SHARED_EXPORTS, ignore_errors=True)


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """``make(folder)`` run once per test session, whichever xdist worker asks first; the others wait for it.

    The folder is in the session's shared temporary folder (each worker's own is a folder inside it). A
    ``make`` that fails leaves no mark, so the next worker that asks tries again and fails with its own error.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


def _compose_with_hydra(overrides: list[str]) -> DictConfig:
    """The composition with its ``hydra`` node (sweeper, launcher, run folder), as lightning-hydra-template does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return hydra_compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def compose() -> Callable[..., DictConfig]:
    """``compose(*overrides, hydra=False)``: the real configuration, as ``run_eval.py`` composes it.

    Paths stay interpolations until read, so a test that sets CONVNEXTPOSE_EVAL_ROOT before reading them
    sees its own root. ``hydra=True`` adds the ``hydra`` node.
    """

    def composed(*overrides: str, hydra: bool = False) -> DictConfig:
        return _compose_with_hydra(list(overrides)) if hydra else compose_config(list(overrides))

    return composed


@pytest.fixture(scope="session")
def variant_cfgs(compose) -> dict[str, dict]:
    """The released variants (the composed config's ``released`` table) as plain dicts."""
    table = variant_table(compose())
    assert tuple(table) == VARIANTS, f"the released table holds {tuple(table)}"
    return table


@pytest.fixture(scope="session")
def auto_variant_cfg(compose) -> dict:
    """``variant=auto`` as run_eval.py passes it on: every shape field null."""
    return as_plain(compose("variant=auto").variant)


@pytest.fixture(scope="session")
def known_specs(variant_cfgs) -> dict[str, ArchSpec]:
    return {name: ArchSpec.from_variant(cfg) for name, cfg in variant_cfgs.items()}


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Random conv weights (torch's init) and random BN affine and running stats, moderate enough to stay finite."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.05)
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.num_batches_tracked.fill_(1000 + seed)


@pytest.fixture(scope="session")
def source_networks(known_specs) -> dict[str, ConvNeXtPose]:
    """One network per variant, built once per session, with random weights and BN stats, in eval mode."""
    networks = {}
    for seed, name in enumerate(VARIANTS):
        torch.manual_seed(1000 + seed)
        model = ConvNeXtPose(known_specs[name])
        _randomize(model, seed)
        networks[name] = model.eval()
    return networks


@pytest.fixture(scope="session")
def sample_images() -> torch.Tensor:
    """A small random batch (2 images of 64x64): enough to exercise every weight, cheap on CPU."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="session")
def source_outputs(source_networks, sample_images) -> dict[str, torch.Tensor]:
    outputs = {}
    with torch.no_grad():
        for name, model in source_networks.items():
            out = model(sample_images)
            assert torch.isfinite(out).all(), name
            outputs[name] = out
    return outputs


_LEGACY_INDEX = {"dwconv": 0, "norm": 1, "pwconv": 2}


def legacy_head_name(key: str) -> str:
    """``head.deconv_layers_N.dwconv/.norm/.pwconv`` -> ``.0/.1/.2``, as the M/L files name them."""
    return re.sub(r"^(head\.deconv_layers_\d+)\.(dwconv|norm|pwconv)\.", lambda m: f"{m.group(1)}.{_LEGACY_INDEX[m.group(2)]}.", key)


def write_released_by_hand(state_dict: dict, folder: Path, variant: str) -> Path:
    """Write ``ConvNeXtPose_<variant>.tar`` as the authors' file is laid out (see module docstring)."""
    epoch = RELEASED_EPOCH[variant]
    snapshot = folder / f"snapshot_{epoch}.pth.tar"
    network = {}
    for key, value in state_dict.items():
        name = legacy_head_name(key) if LEGACY_HEAD_KEYS[variant] else key
        network[f"module.{name}"] = value.detach().clone()
    torch.save({"epoch": epoch, "network": network, "optimizer": {"state": {}, "param_groups": []}}, snapshot)
    with zipfile.ZipFile(snapshot) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    pickles = [data for info, data in entries if info.filename == f"snapshot_{epoch}.pth/data.pkl"]
    assert len(pickles) == 1 and _CPU_TAG in pickles[0], "torch.save layout changed: no 'cpu' storage tag to patch"
    with zipfile.ZipFile(snapshot, "w", compression=zipfile.ZIP_STORED) as archive:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                data = data.replace(_CPU_TAG, _CUDA_TAG)
                assert _CPU_TAG not in data and _CUDA_TAG in data
            archive.writestr(info, data)
    target = folder / f"ConvNeXtPose_{variant}.tar"
    snapshot.rename(target)
    return target


@pytest.fixture(scope="session")
def released_files(tmp_path_factory, source_networks) -> dict[str, Path]:
    """Variant -> a hand-written ``ConvNeXtPose_<V>.tar`` holding that variant's source network."""
    folder = tmp_path_factory.mktemp("released")
    files = {}
    for name, model in source_networks.items():
        sub = folder / name
        sub.mkdir()
        files[name] = write_released_by_hand(model.state_dict(), sub, name)
    return files


# --------------------------------------------------------------------------- the synthetic Human3.6M sample


@pytest.fixture(scope="session")
def synthetic_sample(sample_eval_root) -> Path:
    """The synthetic Human3.6M sample (data and checkpoints), generated once per session. Treat as read-only."""
    return sample_eval_root / "outputs" / "sample"


@pytest.fixture()
def copy_sample_data(synthetic_sample):
    """``copy(dest)``: a private copy of the sample without its checkpoints (about 4 MB), for tests that alter files."""
    def copy(dest: Path) -> Path:
        shutil.copytree(synthetic_sample, dest, ignore=shutil.ignore_patterns("checkpoints"))
        return Path(dest)

    return copy


@pytest.fixture(scope="session")
def sample_eval_root(tmp_path_factory) -> Path:
    """A CONVNEXTPOSE_EVAL_ROOT whose outputs/sample holds a freshly generated synthetic sample (seed 0).

    Runs of ``run_eval.py experiment=demo`` with this root read the sample and its
    checkpoints from there and keep their caches under its outputs/. Treat the sample as read-only.
    """
    from convnextpose_eval.sample.generator import generate_sample

    root = tmp_path_factory.mktemp("eval_root")
    generate_sample(root / "outputs" / "sample")
    return root


@pytest.fixture(scope="session")
def eval_root_with_sample(sample_eval_root, tmp_path_factory) -> Callable[[str], Path]:
    """``make(name)``: a fresh project root whose outputs/sample links to the session's sample.

    Each root has its own outputs (runs, sweeps, caches, checkpoint cache) but shares the one generated
    sample, so a test can assert what a run created under its root without generating another sample.
    """

    def make(name: str) -> Path:
        return link_sample(tmp_path_factory.mktemp(name), sample_eval_root)

    return make


def link_sample(root: Path, sample_eval_root: Path) -> Path:
    """``root`` made a project root whose outputs/sample links to the session's sample."""
    (root / "outputs").mkdir(parents=True)
    (root / "outputs" / "sample").symlink_to(sample_eval_root / "outputs" / "sample", target_is_directory=True)
    return root


def page_sweep_once(tmp_path_factory: pytest.TempPathFactory, sample_eval_root: Path, name: str, command: str) -> Path:
    """A page's sweep ``command`` run to completion once per session (:func:`made_once`), whichever xdist
    worker asks first, on a project root of its own linked to the sample; its sweep folder (SWEEP)."""
    from cli import run_cli
    from doc_commands import page_command

    def make(root: Path) -> None:
        link_sample(root, sample_eval_root)
        done = run_cli(root, *page_command(command, SWEEP=root / "sweep")[2:])
        assert done.returncode == 0, done.describe()

    return made_once(tmp_path_factory, name, make) / "sweep"


@pytest.fixture(scope="session")
def demo_sweep_p1(sample_eval_root, tmp_path_factory) -> Path:
    """The demo sweep, all four variants, on protocol 1 with a fresh crop cache (the root's own), through the
    PyTorch engine, tracked with MLflow: docs/tracking.md's command as the page shows it. Made once per
    session. The sweep-report tests read it, the ONNX Runtime runs are compared with it, the tracking tests
    read its store. Read-only."""
    command = "python run_eval.py -m experiment=demo data.protocol=1 backend=pytorch logger=mlflow hydra.sweep.dir=SWEEP"
    return page_sweep_once(tmp_path_factory, sample_eval_root, "demo_sweep", command)


@pytest.fixture(scope="session")
def default_engine_p1(sample_eval_root, tmp_path_factory) -> Path:
    """XS and S of the demo on protocol 1, one process, default settings (on this CPU: ONNX Runtime on the
    cached export), tracked with TensorBoard: the single run that torchrun and SLURM launches of the same
    command are compared with, and the one-process run of test_evaluate.py (its TensorBoard and DDP tests).
    Made once per session. Read-only."""
    command = "python run_eval.py -m experiment=demo variant=XS,S data.protocol=1 logger=tensorboard hydra.sweep.dir=SWEEP"
    return page_sweep_once(tmp_path_factory, sample_eval_root, "default_engine_p1", command)
