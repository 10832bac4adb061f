"""``ignite-mbo``: run one trial, run a sweep, report sweeps, test the paper's claims, manage the data."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from signal import Signals
from typing import Any

from ignite_mbo.errors import UserError, check_working_folder, path_error, printable
from ignite_mbo.platform import signals
from ignite_mbo.platform.signals import StopOnSignals, Stopped, exit_process, exit_status, noted_until_imported
from ignite_mbo.run_command import add_run_command, command_run
from ignite_mbo.settings_cli import Parser, describe_baselines, key_values
from ignite_mbo.store_guard import check_tracking_uri, default_tracking_uri, in_chain, mask, store_failure

TRUST_NOTE = ("--resume unpickles Ray Tune's state (tuner.pkl) from the sweep folder or --storage-path: "
              "keep that location writable only by you")


def package_version() -> str:
    try:
        return version("ignite-mbo")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> Parser:
    check_working_folder()  # before torch, whose MKL aborts in a deleted folder with a line that names neither
    from ignite_mbo import baselines
    from ignite_mbo.platform.spaces import MAX_TRIALS
    from ignite_mbo.tasks.data import REPO_ID, REVISION, TASK_FOLDERS

    parser = Parser(prog="ignite-mbo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    add_run_command(commands)

    sweep = commands.add_parser(
        "sweep", help="run a search-space YAML as a Ray Tune sweep tracked in MLflow",
        description="Run a search space as a Ray Tune sweep: one MLflow run per trial under a parent run, "
                    "results.parquet and the gain report in OUTPUT_DIR/<name>/ (<name>-2, ... when the space "
                    "ran there before). Ctrl-C stops it; --resume finishes it.", epilog=TRUST_NOTE + ".")
    sweep.add_argument("space", type=Path, help="search-space YAML, e.g. search_spaces/quick.yaml")
    sweep.add_argument("--address", help="Ray cluster to join ('auto' inside 'ray job submit'); default: an "
                                         "embedded local Ray on 127.0.0.1")
    sweep.add_argument("--tracking-uri",
                       help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///$PWD/mlflow.db)")
    sweep.add_argument("--output-dir", type=Path, default=Path("ignite_mbo_results"),
                       help="results go to OUTPUT_DIR/<sweep name>/")
    sweep.add_argument("--data-dir", help="Design-Bench data folder (default: $IGNITE_MBO_DATA_DIR, else the user cache)")
    sweep.add_argument("--gpus-per-trial", type=float,
                       help="override the YAML's resources.gpu: 0.25 packs 4 trials per GPU; 0 runs on CPU")
    sweep.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    sweep.add_argument("--max-trials", type=int, default=MAX_TRIALS,
                       help="refuse a space that asks for more trials (grid × variants × num_samples)")
    sweep.add_argument("--resume", action="store_true",
                       help="finish the newest interrupted sweep of this space in OUTPUT_DIR (same YAML and "
                            f"options). {TRUST_NOTE}")
    sweep.add_argument("--max-retries", type=int,
                       help="override the YAML's failure.max_retries (a trial that raises is retried from "
                            "its checkpoint; a NaN/inf loss is never retried)")
    sweep.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                       help="change the space before it runs, e.g. --override trial.fidelity=quick "
                            "--override grid.seed=[0,1] (values read as YAML; repeatable)")
    sweep.add_argument("--storage-path",
                       help="where Tune keeps trial checkpoints and its state (default: "
                            "$IGNITE_MBO_STORAGE_PATH, else the sweep folder's parent); "
                            "a multi-node cluster needs shared storage: s3://..., gs://... or an NFS path")
    sweep.add_argument("--quiet", action="store_true", help="no table of trials while the sweep runs")

    listing = commands.add_parser("baselines", help="list each baseline's settings for --set",
                                  description="List a baseline's settings (all baselines' without NAME): each "
                                              "one's default, its quick-fidelity value and what it means, and the "
                                              "per-task defaults.")
    listing.add_argument("name", nargs="?", help=f"one of {', '.join(baselines.names())}")

    report = commands.add_parser(
        "report", help="print and save the gain report of finished sweeps (one or several)",
        description="Re-build the gain report (gains paired by seed with 95% t-intervals, exact sign-flip "
                    "p-values and n, the regularizer comparison, the reproduction check, the paper's claims). "
                    "One sweep folder: written next to its results, with λ and sharpness curves across seeds in "
                    "curves/, and logged to the sweep's MLflow run. "
                    "Several sweeps (folders, results.parquet or benchmarks/trials.py .jsonl): one table "
                    "over all of them, printed, and written to --output-dir if given.")
    report.add_argument("sweep", type=Path, nargs="+",
                        help="sweep folders (OUTPUT_DIR/<name>), results.parquet or trial-record .jsonl files")
    report.add_argument("--no-mlflow", action="store_true",
                        help="do not log the report to the sweep's MLflow run (nor read its λ and sharpness curves)")
    report.add_argument("--format", choices=["markdown", "latex"], default="markdown",
                        help="print markdown, or LaTeX tables for a paper (also written as gain_table.tex)")
    report.add_argument("--output-dir", type=Path, help="with several sweeps: write the report files here")

    claims = commands.add_parser(
        "claims", help="the paper's five claims beside what the given sweeps measured",
        description="For the sweeps given (folders, results.parquet or benchmarks/trials.py .jsonl), each of "
                    "the paper's claims beside its number: improved / dropped / unchanged / cannot-change "
                    "cells with each cell's paired gain, interval, p and n; rival regularizers; sharpness; "
                    "sensitivity; training-time overhead.")
    claims.add_argument("sweep", type=Path, nargs="+",
                        help="sweep folders (OUTPUT_DIR/<name>), results.parquet or trial-record .jsonl files")

    add_record_commands(commands)

    data = commands.add_parser("data", help="where the Design-Bench data is, check it, download it",
                               description="path: print the data folder; verify: check every file's size and "
                                           "sha256; download: fetch missing files from the mirror, then verify.")
    data.add_argument("action", choices=["path", "verify", "download"], help="what to do")
    data.add_argument("--task", choices=[*TASK_FOLDERS, "all"], default="all", help="which task's files")
    data.add_argument("--data-dir", help="data folder (default: $IGNITE_MBO_DATA_DIR, else the user cache)")
    data.add_argument("--revision", default=REVISION,
                      help=f"revision of the Hugging Face dataset {REPO_ID} to download; "
                           "$HF_ENDPOINT picks a mirror, HF_HUB_OFFLINE=1 uses only the Hugging Face cache")
    return parser


def resume_command(argv: list[str]) -> str:  # the command that finishes the sweep ``argv`` started
    return shlex.join(["ignite-mbo", *[a for a in argv if a != "--resume"], "--resume"])


def command_sweep(args: argparse.Namespace, argv: list[str]) -> int:
    from ignite_mbo.platform.sweep import SweepInterrupted, run_sweep

    try:
        outcome = run_sweep(args.space, address=args.address, tracking_uri=args.tracking_uri,
                            output_dir=args.output_dir, data_dir=args.data_dir,
                            gpus_per_trial=args.gpus_per_trial, num_cpus=args.num_cpus, resume=args.resume,
                            max_retries=args.max_retries, overrides=key_values(args.override, "--override"),
                            storage_path=args.storage_path, max_trials=args.max_trials,
                            resume_hint=f"to finish the sweep run: {resume_command(argv)}", quiet=args.quiet)
    except SweepInterrupted as interrupted:
        print(f"Sweep interrupted; its state is in {interrupted.sweep_dir}. To finish it, run: {resume_command(argv)}",
              file=sys.stderr)
        return 128 + interrupted.signum  # 130 for SIGINT, 143 for SIGTERM
    print(f"\n{outcome.report_markdown}\n{outcome.num_trials} trials ({outcome.num_errors} failed)")
    for line in outcome.errors:
        print(f"  failed: {line}")
    print(f"MLflow store: {mask(outcome.tracking_uri)}")
    print(f"results:      {outcome.results_path}")
    if outcome.report_files:
        print(f"report:       {outcome.report_files[0]}")
    if outcome.tracking_uri.startswith("sqlite:"):
        print(f"look at it:   mlflow ui --backend-store-uri {shlex.quote(outcome.tracking_uri)}")
        print(f"then open:    {outcome.ui_url}")
    else:
        print(f"look at it:   {mask(outcome.ui_url.replace('http://127.0.0.1:5000', outcome.tracking_uri))}")
    if outcome.failure:
        print(f"ignite-mbo sweep: error: {printable(outcome.failure)}", file=sys.stderr)
    return 1 if outcome.num_errors else 0


def command_report(args: argparse.Namespace) -> int:
    from ignite_mbo import mlflow_store as store
    from ignite_mbo.platform.record import SWEEP_FILE, SweepRecord
    from ignite_mbo.platform.report.commands import latex_for, report_sources, write_curves
    from ignite_mbo.platform.report.inputs import results_path
    from ignite_mbo.platform.report.sweep_report import report_sweep
    from ignite_mbo.platform.results import read_table

    if len(args.sweep) > 1 or args.output_dir is not None or args.sweep[0].suffix == ".jsonl":
        text, paths = report_sources(args.sweep, args.format, args.output_dir)
        print(text)
        if paths:
            print(f"written: {', '.join(str(p) for p in paths)}")
        return 0
    folder = (path := results_path(args.sweep[0])).parent
    record = SweepRecord.load(folder) if (folder / SWEEP_FILE).exists() else None
    table = read_table(path)
    log = record is not None and not args.no_mlflow
    if log and record is not None:
        check_tracking_uri(record.tracking_uri, if_missing="put the sweep's store back there, or pass --no-mlflow")
        if not store.is_sweep_run(record.tracking_uri, record.parent_run_id, record.experiment):
            raise UserError(f"{record.parent_run_id} is not a sweep's MLflow run in experiment {record.experiment!r} "
                            f"of {record.tracking_uri}; pass --no-mlflow to write the report only to the folder")
    markdown, paths = report_sweep(folder, table, record, mlflow=log)
    if record is not None and not args.no_mlflow:
        paths += write_curves(table, record.tracking_uri, folder)
    if args.format == "latex":
        paths.append(latex_for([path], folder))
        markdown = paths[-1].read_text()
    print(markdown)
    print(f"written: {', '.join(str(p) for p in paths)}" + (" (and logged to the sweep's MLflow run)" if log else ""))
    return 0


def command_claims(args: argparse.Namespace) -> int:
    from ignite_mbo.platform.report.commands import claims_text

    print(claims_text(args.sweep))
    return 0


def add_record_commands(commands: Any) -> None:
    """``rerun`` (a trial again from its MLflow record) and ``spaces`` (the shipped search spaces)."""
    rerun = commands.add_parser("rerun", help="run a recorded trial again from its MLflow record and compare its scores",
                                description="Rebuild a trial from its MLflow run's params alone, run it in this "
                                            "process (no Ray, nothing recorded) and print recorded and new scores; "
                                            "exit status 1 if they differ.")
    rerun.add_argument("run_id", help="the trial's MLflow run id (the UI, or results.parquet's mlflow_run_id)")
    rerun.add_argument("--tracking-uri",
                       help="the run's MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///$PWD/mlflow.db)")
    rerun.add_argument("--data-dir", help="Design-Bench data folder (default: $IGNITE_MBO_DATA_DIR, else the user cache)")
    rerun.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda, cuda:N, mps")
    rerun.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's)")
    rerun.add_argument("--quiet", action="store_true", help="no progress bar")
    spaces = commands.add_parser("spaces", help="list the search spaces that ship with ignite-mbo",
                                 description="List the search spaces (file, trials, description).")
    spaces.add_argument("--dir", type=Path, help="a folder of YAML spaces (default: the repository's search_spaces/)")


def command_rerun(args: argparse.Namespace) -> int:
    from ignite_mbo.platform.checks import check_device
    from ignite_mbo.platform.console import ProgressBar
    from ignite_mbo.platform.rerun import rerun

    check_device(args.device)
    if args.threads is not None:
        from ignite_mbo.limits import check_threads

        check_threads(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    uri = check_tracking_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                             or default_tracking_uri(), if_missing="pass the run's store as --tracking-uri", writes=False)
    progress = None if args.quiet else ProgressBar()
    try:
        outcome = rerun(uri, args.run_id, data_dir=args.data_dir, device=args.device,
                        **({"progress": progress} if progress is not None else {}))
    finally:
        if progress is not None:
            progress.close()
    print(f"rerun of {args.run_id}: {json.dumps(outcome.config.model_dump(mode='json'))}")
    for line in outcome.notes + outcome.score_lines():
        print(f"  {line}")
    print("same scores as the record" if outcome.same_scores else "the scores differ from the record")
    print(json.dumps({**outcome.summary, "config": outcome.config.model_dump(mode="json")}, default=float))
    return 0 if outcome.same_scores else 1


def command_spaces(args: argparse.Namespace) -> int:
    from ignite_mbo.platform.catalog import SHIPPED, format_spaces, list_spaces
    print(format_spaces(list_spaces(args.dir or SHIPPED)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with noted_until_imported():  # a Ctrl-C inside torch's import would abort the process
            parser = build_parser()
    except UserError as error:  # a plugin module that does not import; a deleted working folder
        print(f"ignite-mbo: error: {printable(str(error))}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            with StopOnSignals():  # SIGTERM too: the run is marked KILLED, a new store is not left half-built
                return command_run(args)
        if args.command == "sweep":
            return command_sweep(args, argv)
        if args.command == "report":
            return command_report(args)
        if args.command == "claims":
            return command_claims(args)
        if args.command in ("rerun", "spaces"):  # rerun, like run, stopped by SIGTERM or SIGHUP: one line
            with StopOnSignals():
                return command_rerun(args) if args.command == "rerun" else command_spaces(args)
        if args.command == "baselines":
            print(describe_baselines(args.name))
            return 0
        from ignite_mbo.platform.data_console import data_command

        return data_command(args.action, [args.task], args.data_dir, args.revision)
    except UserError as error:
        print(f"ignite-mbo {args.command}: error: {printable(mask(str(error)))}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped) as stopped:  # a --resume stopped before Tune: the sweep is as it was
        signum = getattr(stopped, "signum", Signals.SIGINT)
        again = (f"; to finish the sweep run: {resume_command(argv)}" if getattr(args, "resume", False) else
                 "; the same command goes on from the last save" if getattr(args, "checkpoints", None) else "")
        print(f"ignite-mbo {args.command}: interrupted (stopped by {Signals(signum).name}){again}", file=sys.stderr)
        return exit_status(signum)
    except Exception as error:  # a path the user can change, or MLflow, HTTP or SQL: one line; else a bug
        oserror = in_chain(error, OSError)
        failure = (path_error(oserror, vars(args).values()) if isinstance(oserror, OSError) else None) or store_failure(error)
        if failure is None:
            raise
        print(f"ignite-mbo {args.command}: error: {printable(failure)}", file=sys.stderr)
        return 2


def entry() -> None:
    """The ``ignite-mbo`` command: :func:`main`, then exit (:func:`signals.exit_process`)."""
    signals.UNTIL_EXIT = True  # a second signal exits at once until the process exits
    try:
        status = main()
    except (KeyboardInterrupt, Stopped) as stopped:  # stopped while the command still imports its libraries
        print(f"ignite-mbo: interrupted{f' ({stopped})' if isinstance(stopped, Stopped) else ''}", file=sys.stderr)
        status = exit_status(getattr(stopped, "signum", Signals.SIGINT))
    exit_process(status)


if __name__ == "__main__":
    entry()
