"""A user's notebook on an installed copy: ``pip install .`` (not editable) into a fresh environment, then a
real Jupyter kernel (nbclient + ipykernel) of that environment, started in a folder outside the checkout,
evaluates the sample through the API and through ``!python -m convnextpose_eval``, shows the summary,
the worst-cases picture and the run's report.html inline, and runs the console script.

One install and one kernel serve both findings (an installed copy could not evaluate; no notebook use was
tested) to keep the suite short. The files the runs write are read back here with ``json``.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli import PROJECT_ROOT, share_exports

pytestmark = pytest.mark.slow

SAMPLE_P1 = 23  # test images of the sample on protocol 1 (S11)
SMALL_RUN = ("experiment=demo", "variant=XS", "data.protocol=1", "trainer.progress_bar=false")
NOISE = ("GPU available", "TPU available", "litlogger", "Tip:", "DeprecationWarning", "srun", "Traceback")
KERNEL = "convnextpose-installed"


def _install(where: Path) -> Path:
    """A fresh environment that sees the packages of the environment running the tests (as a notebook server's
    kernel sees its own), with this checkout installed into it as a wheel would be.

    The running environment's package folders are put on the new one's path by a ``.pth`` file. A
    ``--system-site-packages`` environment would instead see the base interpreter's packages: where the
    tests run in a virtual environment (as a newcomer's would), that is a different, older set.
    """
    import sysconfig

    source = where / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, source / name)
    for folder in ("src", "conf"):  # copied, so the build's own folders land outside the checkout
        shutil.copytree(PROJECT_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    running = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    # Plain folder lines, appended after the new environment's own: its own install of this package comes first.
    (Path(purelib) / "running_environment.pth").write_text("".join(f"{folder}\n" for folder in running))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(source)]
    done = subprocess.run(pip, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def _kernel_spec(venv: Path, jupyter_path: Path) -> None:
    folder = jupyter_path / "kernels" / KERNEL
    folder.mkdir(parents=True)
    argv = [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (folder / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))


def _stream(outputs: list) -> str:
    return "".join(out.get("text", "") for out in outputs if out["output_type"] == "stream")


def test_installed_copy_evaluates_in_a_notebook_through_the_api_and_the_module(eval_root_with_sample, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    root = eval_root_with_sample("notebook")
    # The session's ONNX exports: the runs here need not export (the installed copy's export code is the checkout's, tested there).
    share_exports(root, ())
    venv = _install(tmp_path)
    _kernel_spec(venv, tmp_path / "jupyter")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the kernel must import the installed copy, not src/
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PATH", f"{venv / 'bin'}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(root))

    run_api, run_cli = tmp_path / "api_run", tmp_path / "cli_run"
    cells = [
        "import json, convnextpose_eval\nprint(convnextpose_eval.__file__)",
        f"from convnextpose_eval import evaluate\nresult = evaluate({', '.join(map(repr, SMALL_RUN))}, run_dir={str(run_api)!r})\nresult",
        "print(json.dumps(result.to_dict()))",
        f"!python -m convnextpose_eval {' '.join(SMALL_RUN)} hydra.run.dir={run_cli}",
        "!convnextpose-eval varient=XS",
        "from IPython.display import Image, display\ndisplay(Image(filename=str(result.files['worst_cases.png'])))",
        "print(result.files['report.html'])\nresult.show()",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(notebook, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(elsewhere)}}).execute()
    where, api_cell, to_dict_cell, module_cell, script_cell, picture_cell, page_cell = (cell["outputs"] for cell in notebook.cells)

    installed = Path(_stream(where).strip())
    assert installed.is_relative_to(venv), _stream(where)
    assert (installed.parent / "py.typed").is_file(), "the package ships its type hints (PEP 561)"

    from_api, from_module = (json.loads((run / "results.json").read_text(encoding="utf-8")) for run in (run_api, run_cli))
    assert json.loads(_stream(to_dict_cell)) == from_api, "to_dict() must equal the run's results.json"
    assert from_api["num_samples"] == SAMPLE_P1 and from_api["variant"] == "XS" and from_api["synthetic"] is True
    assert from_api["metrics"] == from_module["metrics"] and from_api["per_action"] == from_module["per_action"]
    assert {p.name for p in run_api.iterdir()} >= {"results.json", "predictions.json", "worst_cases.png", "run_eval.log"}
    assert "metric (mm)" in (run_api / "run_eval.log").read_text(encoding="utf-8"), "the API run logs its table to the run's log"

    [shown] = [out for out in api_cell if out["output_type"] == "execute_result"]
    markdown = shown["data"]["text/markdown"]
    assert "ConvNeXtPose-XS" in markdown and "SYNTHETIC SAMPLE" in markdown
    assert f"| MPJPE | {from_api['metrics']['mpjpe']:.2f} |" in markdown
    assert f"| Directions | {from_api['per_action']['Directions']['mpjpe']:.2f} |" in markdown
    printed = _stream(api_cell)
    assert "metric (mm)" not in printed, "the summary is the returned object, not console output"
    for noise in NOISE:
        assert noise not in printed, f"{noise!r} in the API cell's output:\n{printed}"

    assert f"results: {run_cli / 'results.json'}" in _stream(module_cell), _stream(module_cell)
    # The console script runs the installed command, and its hints name it as typed.
    assert _stream(script_cell).strip() == "error: varient: no such setting; did you mean variant? (`convnextpose-eval --help` lists them all)"

    [image] = [out for out in picture_cell if out["output_type"] == "display_data"]
    assert base64.b64decode(image["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (PROJECT_ROOT / "build").exists(), "the install may not build inside the checkout"

    # The run's page: its path in result.files, and the whole page inline (the browser test of the iframe: test_report_html.py).
    assert _stream(page_cell).strip() == str(run_api / "report.html")
    [inline] = [out for out in page_cell if out["output_type"] == "execute_result"]
    frame = inline["data"]["text/html"]
    assert frame.startswith("<iframe") and 'sandbox="allow-scripts"' in frame
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert srcdoc == (run_api / "report.html").read_text(encoding="utf-8")
