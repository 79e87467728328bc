"""Names of the files a run and a sweep write (docs/results-format.md), in one place."""

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.json"
FAILURE_FILE = "failure.json"
# Beside failure.json when the failure was a bug: the traceback, for the report a user files.
TRACEBACK_FILE = "traceback.txt"
WORST_CASES_PNG = "worst_cases.png"
# The run's self-contained page (docs/report.md); a sweep folder and a deploy folder hold one too.
REPORT_HTML = "report.html"
BENCHMARK_JSON = "benchmark_results.json"
BENCHMARK_MD = "BENCHMARK_REPORT.md"
BENCHMARK_PNG = "benchmark_comparison.png"
# Announces the files a run is writing, with their SHA-256, until the last is in place (atomic.write_file_set).
PENDING_FILE = ".convnextpose_eval.pending.json"
# logger=mlflow's default local store (a SQLite file and the artifacts), in a run folder or a sweep folder.
MLFLOW_STORE_DIR = "mlflow"
