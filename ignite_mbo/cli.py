"""``ignite-mbo``: run one trial, run a sweep, report a sweep, manage the data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ignite_mbo.errors import UserError

REGULARIZER_FLAGS = ("epsilon", "initial_lambda", "lambda_lr", "rho", "radius", "hvp", "project_lambda")


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line with a pointer to --help, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["epochs=5", "hidden_size=64"]`` -> ``{"epochs": 5, "hidden_size": 64}`` (values read as YAML scalars)."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            parsed[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            raise UserError(f"{flag} {key}: {value!r} is not a YAML value") from None
    return parsed


def build_parser() -> Parser:
    from ignite_mbo.baselines import BASELINES
    from ignite_mbo.regularizers import CONFIGS
    from ignite_mbo.tasks import REGISTRY
    from ignite_mbo.tasks.data import REPO_ID, REVISION, TASK_FOLDERS

    parser = Parser(prog="ignite-mbo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="run one trial in this process (no Ray) and print its summary as JSON")
    run.add_argument("--task", default="TFBind8-Exact-v0", help=f"one of {', '.join(REGISTRY)}")
    run.add_argument("--baseline", default="grad-ascent", help=f"one of {', '.join(BASELINES)}")
    run.add_argument("--regularizer", default="none", help=f"one of {', '.join(CONFIGS)}")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--fidelity", choices=["quick", "full"], default="full",
                     help="full: the published settings (default); quick: small models for smoke tests")
    run.add_argument("--data-dir", help="Design-Bench data folder (default: $IGNITE_MBO_DATA_DIR, else the user cache)")
    hyper = run.add_argument_group("regularizer hyperparameters (default: the published settings)")
    hyper.add_argument("--epsilon", type=float, help="ε, the sharpness bound (IGNITE)")
    hyper.add_argument("--initial-lambda", type=float, help="λ₀ (IGNITE) or the fixed λ (IGNITE-2)")
    hyper.add_argument("--lambda-lr", type=float, help="η_λ, the dual-ascent step of λ (IGNITE)")
    hyper.add_argument("--rho", type=float, help="ρ, the sharpness scale")
    hyper.add_argument("--radius", type=float, help="r, the finite-difference perturbation radius")
    hyper.add_argument("--hvp", choices=["finite_difference", "exact"], help="Hessian-vector product")
    hyper.add_argument("--project-lambda", action=argparse.BooleanOptionalAction, default=None,
                       help="keep λ ≥ 0 (default); --no-project-lambda reproduces the official code")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a baseline setting, e.g. --set epochs=10 (repeatable)")
    run.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                     help="task option, e.g. --task-option max_samples=5000")
    run.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda, cuda:1, ...")
    run.add_argument("--tracking-uri", help="also record the trial in this MLflow store (experiment 'runs')")

    sweep = commands.add_parser("sweep", help="run a search-space YAML as a Ray Tune sweep tracked in MLflow")
    sweep.add_argument("space", type=Path, help="search-space YAML, e.g. search_spaces/quick.yaml")
    sweep.add_argument("--address", help="Ray cluster to join ('auto' inside 'ray job submit'); default: local Ray")
    sweep.add_argument("--tracking-uri",
                       help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///$PWD/mlflow.db)")
    sweep.add_argument("--output-dir", type=Path, default=Path("ignite_mbo_results"),
                       help="results go to OUTPUT_DIR/<sweep name>/ (default: ./ignite_mbo_results)")
    sweep.add_argument("--data-dir", help="Design-Bench data folder")
    sweep.add_argument("--gpus-per-trial", type=float,
                       help="override the YAML's resources.gpu: 0.25 packs 4 trials per GPU; 0 runs on CPU")
    sweep.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    sweep.add_argument("--resume", action="store_true",
                       help="finish an interrupted sweep in OUTPUT_DIR/<name> (same YAML and options)")
    sweep.add_argument("--max-retries", type=int,
                       help="override the YAML's failure.max_retries (a trial that raises is retried from "
                            "its checkpoint; a NaN/inf loss is never retried)")
    sweep.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                       help="change the space before it runs, e.g. --override trial.fidelity=quick "
                            "--override grid.seed=[0,1] (values read as YAML; repeatable)")
    sweep.add_argument("--storage-path",
                       help="where Tune keeps trial checkpoints and its state (default: "
                            "$IGNITE_MBO_STORAGE_PATH, else the sweep folder); "
                            "a multi-node cluster needs shared storage: s3://..., gs://... or an NFS path")

    report = commands.add_parser("report", help="print and save the gain table of a finished sweep")
    report.add_argument("sweep", type=Path, help="a sweep folder (OUTPUT_DIR/<name>) or its results.parquet")
    report.add_argument("--no-mlflow", action="store_true", help="do not log the report to the sweep's MLflow run")

    data = commands.add_parser("data", help="where the Design-Bench data is, check it, download it")
    data.add_argument("action", choices=["path", "verify", "download"])
    data.add_argument("--task", choices=[*TASK_FOLDERS, "all"], default="all")
    data.add_argument("--data-dir", help="data folder (default: $IGNITE_MBO_DATA_DIR, else the user cache)")
    data.add_argument("--revision", default=REVISION,
                      help=f"revision of the Hugging Face dataset {REPO_ID} to download (default: %(default)s); "
                           "$HF_ENDPOINT picks a mirror, HF_HUB_OFFLINE=1 uses only the Hugging Face cache")
    return parser


def command_run(args: argparse.Namespace) -> int:
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.trial import run_trial

    hyperparameters = {k: getattr(args, k) for k in REGULARIZER_FLAGS if getattr(args, k) is not None}
    config = TrialConfig.parse({
        "task": args.task, "baseline": args.baseline, "seed": args.seed, "fidelity": args.fidelity,
        "regularizer": {"name": args.regularizer, **hyperparameters},
        "baseline_options": key_values(args.set, "--set"),
        "task_options": key_values(args.task_option, "--task-option"),
    })
    recorder = None
    if args.tracking_uri:
        from ignite_mbo.platform.tracking import TrialRecorder

        recorder = TrialRecorder(args.tracking_uri, "runs", config)
    result = run_trial(config, data_dir=args.data_dir, log=recorder, device=args.device)
    if recorder is not None:
        recorder.finish(result)
    print(json.dumps({**result.summary, "config": config.model_dump(mode="json")}, default=float))
    return 0


def command_sweep(args: argparse.Namespace) -> int:
    from ignite_mbo.platform.sweep import run_sweep

    outcome = run_sweep(args.space, address=args.address, tracking_uri=args.tracking_uri,
                        output_dir=args.output_dir, data_dir=args.data_dir,
                        gpus_per_trial=args.gpus_per_trial, num_cpus=args.num_cpus, resume=args.resume,
                        max_retries=args.max_retries, overrides=key_values(args.override, "--override"),
                        storage_path=args.storage_path)
    print(outcome.report_markdown)
    print(f"{outcome.num_trials} trials ({outcome.num_errors} failed); results: {outcome.results_path}")
    return 1 if outcome.num_errors else 0


def command_report(args: argparse.Namespace) -> int:
    from ignite_mbo.platform import report as reporting
    from ignite_mbo.platform.results import read_table
    from ignite_mbo.platform.sweep import RESULTS_FILE, SWEEP_FILE

    path = args.sweep / RESULTS_FILE if args.sweep.is_dir() else args.sweep
    if not path.is_file():
        raise UserError(f"no results table at {path}; pass a sweep folder made by 'ignite-mbo sweep' or its {RESULTS_FILE}")
    meta_path = path.parent / SWEEP_FILE
    if meta_path.is_file():  # a sweep folder: the report, its sensitivity plots, logged to the sweep's run
        from ignite_mbo.platform.sweep import report_sweep

        print(report_sweep(path.parent, read_table(path), json.loads(meta_path.read_text()), mlflow=not args.no_mlflow))
    else:
        report = reporting.build_report(read_table(path))
        report.write(path.parent)
        print(report.to_markdown())
    print(f"written: {path.parent / 'gain_table.md'}, gain_table.csv, gain_table.png")
    return 0


def command_data(args: argparse.Namespace) -> int:
    from ignite_mbo.tasks.data import data_command

    return data_command(args.action, [args.task], args.data_dir, args.revision)


COMMANDS = {"run": command_run, "sweep": command_sweep, "report": command_report, "data": command_data}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"ignite-mbo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
