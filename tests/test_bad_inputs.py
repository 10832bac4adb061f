"""Hostile and mistaken input to `run`, `sweep`, `report` and `data`: every case exits 2 with one line
on stderr, no traceback, and writes nothing (no file in the working folder, no MLflow store).

Most cases run in-process through ``ignite_mbo.cli.main(argv)`` with the working folder a fresh
temporary one (fast); a few go through the installed console script in a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ignite_mbo.cli import main

from processes import http_servers, tmpfs

# Placeholders in argv: {space} is a search space written from the case's YAML, {outside} a folder
# outside the working folder, {file} a plain file, {empty} an empty folder.
RUN = [
    (["run", "--task", "TFBind9-Exact-v0"], "unknown task"),
    (["run", "--baseline", "gradient-descent"], "unknown baseline"),
    (["run", "--regularizer", "magic"], "unknown regularizer 'magic'"),
    (["run", "--regularizer", "ignite", "--rho", "-1"], "rho"),
    (["run", "--regularizer", "ignite", "--rho", "0"], "rho"),
    (["run", "--regularizer", "ignite", "--rho", "nan"], "rho"),
    (["run", "--regularizer", "ignite", "--rho", "inf"], "rho"),
    (["run", "--regularizer", "ignite", "--epsilon", "-1"], "epsilon"),
    (["run", "--regularizer", "ignite", "--epsilon", "nan"], "epsilon"),
    (["run", "--regularizer", "ignite", "--radius", "1e300"], "radius"),
    (["run", "--regularizer", "ignite", "--initial-lambda", "inf"], "initial_lambda"),
    (["run", "--regularizer", "ignite", "--lambda-lr", "-1"], "lambda_lr"),
    (["run", "--regularizer", "ignite2", "--lambda-lr", "0.1"],
     "lambda_lr: IGNITE-2 keeps λ fixed, so its lambda_lr is 0; use the regularizer ignite"),
    (["run", "--regularizer", "none", "--epsilon", "0.1"], "unknown option"),
    (["run", "--regularizer", "ignite", "--hvp", "magic"], "invalid choice"),
    (["run", "--seed", "-1"], "seed"),
    (["run", "--seed", str(2**32)], "seed"),
    (["run", "--seed", str(2**64)], "seed"),
    (["run", "--seed", "abc"], "invalid int value"),
    (["run", "--seed", "1.5"], "invalid int value"),
    (["run", "--fidelity", "medium"], "invalid choice"),
    (["run", "--set", "epochs=-1"], "epochs"),
    (["run", "--set", "epochs=0"], "epochs"),
    (["run", "--set", "epochs=many"], "epochs"),
    (["run", "--set", "epochs=[1, 2]"], "epochs"),
    (["run", "--set", "hidden_size=0"], "hidden_size"),
    (["run", "--set", "learning_rate=-1"], "learning_rate"),
    (["run", "--set", "learning_rate=.nan"], "learning_rate"),
    (["run", "--set", "learning_rate=.inf"], "learning_rate"),
    (["run", "--set", "batch_size=0"], "batch_size"),
    (["run", "--set", "validation_size=10000000"], "validation_size"),
    (["run", "--set", "solver_steps=-5"], "solver_steps"),
    (["run", "--set", "bogus=1"], "unknown option"),
    (["run", "--set", "epochs"], "KEY=VALUE"),
    (["run", "--set", "=5"], "KEY=VALUE"),
    (["run", "--set", "epochs=1", "--set", "epochs=2"], "given twice"),
    (["run", "--set", "epochs=[1, 2"], "not a YAML value"),
    (["run", "--baseline", "cbas", "--set", "epochs=-3"], "epochs"),
    (["run", "--baseline", "coms", "--set", "learning_rate=0"], "learning_rate"),
    (["run", "--baseline", "reinforce", "--set", "batch_size=-1"], "batch_size"),
    (["run", "--task-option", "bogus=1"], "bogus"),
    (["run", "--task-option", "novalue"], "KEY=VALUE"),
    (["run", "--task", "TFBind10-Exact-v0", "--task-option", "max_samples=-5"], "max_samples"),
    (["run", "--task", "TFBind10-Exact-v0", "--task-option", "max_samples=many"], "max_samples"),
    (["run", "--task", "Synthetic-Ackley60-v0", "--task-option", f"data_seed={2**32}"], "data_seed"),
    (["run", "--device", "bogus"], "unknown device"),
    (["run", "--device", "cuda"], "--device cuda"),
    (["run", "--device", "cuda:7"], "--device cuda:7"),
    (["run", "--device", "tpu"], "unknown device"),
    (["run", "--threads", "0"], "--threads 0: this machine has"),
    (["run", "--tracking-uri", "ftp://example/mlflow"], "unsupported tracking URI"),
    (["run", "--tracking-uri", "file:///tmp/mlruns"], "unsupported tracking URI"),
    (["run", "--tracking-uri", "sqlite://"], "names no database file"),
    (["run", "--tracking-uri", "http://127.0.0.1:99999"], "names no usable port (Port out of range 0-65535); use"),
    (["run", "--tracking-uri", "http://127.0.0.1:0"], "names no usable port (port 0)"),
    (["run", "--tracking-uri", "https://127.0.0.1:x1"], "names no usable port (Port could not be cast"),
    (["run", "--tracking-uri", "sqlite:///no/such/folder/mlflow.db"], "does not exist"),
    (["run", "--tracking-uri", "sqlite:///{empty}"], "points at a folder"),
    (["run", "--tracking-uri", "http://127.0.0.1:9"], "no MLflow server answers"),
    (["run", "--data-dir", "{empty}"], "data missing"),
    (["run", "--data-dir", "{file}"], ""),
    (["run", "--unknown-flag"], "unrecognized arguments"),
    # round two: values that pass the schema but not the task or the machine
    (["run", "--threads", "100000"], "core(s); use 1 to"),
    (["run", "--threads", "2147483648"], "core(s); use 1 to"),
    (["run", "--set", "validation_size=40000"], "validation_size=40000 holds out every row"),
    (["run", "--task-option", "max_samples=1"], "trains on 1 rows"),
    (["run", "--set", "hidden_size=65536", "--set", "num_layers=8"], "GiB to train"),
    (["run", "--set", "epochs=true"], "epochs: true is a YAML boolean"),
    (["run", "--set", "learning_rate=false"], "learning_rate: false is a YAML boolean"),
    (["run", "--regularizer", "ignite", "--set", "batch_size=yes"], "batch_size: true is a YAML boolean"),
    # round three: settings whose memory grows with them, and sizes beyond the task's pool
    (["run", "--baseline", "bo-qei", "--set", "bo_gp_samples=1000000"], "bo_gp_samples=1,000,000 needs about"),
    (["run", "--baseline", "bo-qei", "--set", "bo_raw_samples=1000000", "--set", "bo_batch_size=1000"],
     "bo_raw_samples=1,000,000 needs about"),
    (["run", "--baseline", "bo-qei", "--set", "bo_mc_samples=1000000", "--set", "bo_batch_limit=1000"],
     "bo_mc_samples=1,000,000 needs about"),
    (["run", "--baseline", "cbas", "--set", "vae_batch_size=65536", "--set", "online_batches=2000"],
     "online_batches=2,000 × vae_batch_size=65,536 needs about"),
    (["run", "--baseline", "cbas", "--set", "online_batches=1000000"],
     "online_batches=1,000,000 × vae_batch_size=100 needs about"),
    (["run", "--set", "num_designs=100000"], "num_designs=100,000 is more than the 32,898 rows"),
    (["run", "--task-option", "max_samples=99999999999"], "pool of 32,898 rows"),
]

GOOD = "name: s\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n"
SWEEP = [
    (["sweep", "missing.yaml"], "not found", None),
    (["sweep", "{empty}"], "is a directory, not a YAML file", None),
    (["sweep", "{space}"], "not valid YAML at line", "name: x\ntrial: {task: [unclosed\n"),
    (["sweep", "{space}"], "must be a YAML mapping", "- just\n- a list\n"),
    (["sweep", "{space}"], "must be a YAML mapping", ""),
    (["sweep", "{space}"], "must be a YAML mapping", "just a string\n"),
    (["sweep", "{space}"], "unknown baseline", "name: x\ntrial: {baseline: nope}\n"),
    (["sweep", "{space}"], "seed", "name: x\ngrid: {seed: [0, -3]}\n"),
    (["sweep", "{space}"], "seed", f"name: x\ngrid: {{seed: [0, {2**32}]}}\n"),
    (["sweep", "{space}"], "unknown option", "name: x\ntrial: {}\nresorces: {cpu: 1}\n"),
    (["sweep", "{space}"], "gpu", "name: x\nresources: {gpu: -1}\n"),
    (["sweep", "{space}"], "cpu", "name: x\nresources: {cpu: 0}\n"),
    (["sweep", "{space}"], "rho", "name: x\ngrid: {regularizer: [none, {name: ignite, rho: zero}]}\n"),
    (["sweep", "{space}"], "duplicate key 'seed'", "name: x\ngrid:\n  seed: [0]\n  seed: [1]\n"),
    (["sweep", "{space}"], "duplicate key 'name'", "name: x\nname: y\n"),
    (["sweep", "{space}"], "reaches into 'task', which is not a mapping; its options go under 'task_options.max_samples'",
     "name: x\ntrial: {task: TFBind8-Exact-v0}\ngrid:\n  task.max_samples: [100, 200]\n"),
    (["sweep", "{space}"], "is not UTF-8 text (byte 0xff at offset 19); save it as UTF-8", b"name: x\ntrial: {}\n#\xff\n"),
    (["sweep", "{space}"], "aliases expand",
     "name: x\na: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\ntrial: {x: *e}\n"),
    (["sweep", "{space}"], "cannot name a folder", "name: '.'\n"),
    (["sweep", "{space}"], "cannot name a folder", "name: '..'\n"),
    (["sweep", "{space}"], "name", "name: a/b\n"),
    (["sweep", "{space}"], "name", "name: ''\n"),
    (["sweep", "{space}"], "name", "trial: {}\n"),
    (["sweep", "{space}"], "ASHA rungs (at most 100)",
     "name: x\nobjective: val_loss\nscheduler: {name: asha, grace_period: 1, max_t: 1000, reduction_factor: 1.0000000001}\n"),
    (["sweep", "{space}"], "ASHA rungs (at most 100)",
     "name: x\nobjective: val_loss\nscheduler: {name: asha, grace_period: 1, max_t: 1000000, reduction_factor: 1.1}\n"),
    (["sweep", "{space}"], "more than --max-trials",
     "name: x\ngrid:\n  seed: " + str(list(range(100))) + "\n  baseline_options.epochs: " + str(list(range(1, 101)))
     + "\n  baseline_options.hidden_size: " + str(list(range(1, 101))) + "\n"),
    (["sweep", "{space}"], "more than --max-trials", "name: x\nnum_samples: 1000000000\n"),
    (["sweep", "{space}", "--max-trials", "5"], "more than --max-trials", "name: x\ngrid: {seed: [0, 1, 2, 3, 4, 5]}\n"),
    (["sweep", "{space}", "--max-trials", "0"], "--max-trials", GOOD),
    (["sweep", "{space}"], "resources.cpu=100", "name: x\nresources: {cpu: 100}\n"),
    (["sweep", "{space}", "--num-cpus", "0"], "--num-cpus", GOOD),
    (["sweep", "{space}", "--num-cpus", "-2"], "--num-cpus", GOOD),
    (["sweep", "{space}", "--gpus-per-trial", "-1"], "--gpus-per-trial", GOOD),
    (["sweep", "{space}", "--max-retries", "-1"], "--max-retries", GOOD),
    (["sweep", "{space}", "--storage-path", "bogus://x/y"], "--storage-path", GOOD),
    (["sweep", "{space}", "--storage-path", "s3://"], "--storage-path", GOOD),
    (["sweep", "{space}", "--storage-path", "{file}/sub"], "is a file", GOOD),
    (["sweep", "{space}", "--output-dir", "{file}"], "is a file", GOOD),
    (["sweep", "{space}", "--output-dir", "{file}/sub"], "is a file", GOOD),
    (["sweep", "{space}", "--tracking-uri", "ftp://x"], "unsupported tracking URI", GOOD),
    (["sweep", "{space}", "--tracking-uri", "http://127.0.0.1:9"], "no MLflow server answers", GOOD),
    (["sweep", "{space}", "--tracking-uri", "sqlite:///no/such/folder/mlflow.db"], "does not exist", GOOD),
    (["sweep", "{space}", "--override", "grid.seed=[0, 1"], "not a YAML value", GOOD),
    (["sweep", "{space}", "--override", "name=.."], "cannot name a folder", GOOD),
    (["sweep", "{space}", "--override", "trial.seed=-4"], "seed", GOOD),
    (["sweep", "{space}", "--override", "trial.baseline_options.epochs=-1"], "epochs", GOOD),
    (["sweep", "{space}", "--override", "trial.task_options.bogus=1"], "bogus", GOOD),
    (["sweep", "{space}", "--override", "noequals"], "KEY=VALUE", GOOD),
    (["sweep", "{space}"], "unknown distribution 'gaussian'",
     "name: x\ntrial: {regularizer: ignite}\nsearch: {regularizer.epsilon: {gaussian: [0, 1]}}\n"),
    (["sweep", "{space}"], "needs bounds > 0",
     "name: x\ntrial: {regularizer: ignite}\nsearch: {regularizer.epsilon: {loguniform: [0, 1]}}\n"),
    (["sweep", "{space}"], "needs an explicit objective", "name: x\nsearch_alg: {name: random}\n"),
    (["sweep", "{space}"], "unknown objective", "name: x\nobjective: accuracy\n"),
    (["sweep", "{space}"], "use an offline objective",
     "name: x\nscheduler: {name: asha}\nobjective: oracle_score\n"),
    (["sweep", "{space}"], "num_samples", "name: x\nnum_samples: 0\n"),
    (["sweep", "{space}"], "max_retries", "name: x\nfailure: {max_retries: -1}\n"),
    (["sweep", "{space}"], "grid axis 'seed' has no values", "name: x\ngrid: {seed: []}\n"),
    (["sweep", "{space}"], "grid axis 'seed' and variant 2 axis 'seed' both set 'seed'; give each setting in one place",
     "name: x\ngrid: {seed: [0, 1]}\nvariants:\n  - {regularizer: [none]}\n  - {seed: [5]}\n"),
    (["sweep", "{space}"], "grid axis 'seed' lists 0 more than once; list each value once",
     "name: x\ngrid: {seed: [0, 1, 0]}\n"),
    (["sweep", "{space}"], "variant 1: axis 'regularizer' lists {'name': 'ignite', 'rho': 0.1} more than once",
     "name: x\nvariants:\n  - {regularizer: [{name: ignite, rho: 0.1}, {rho: 0.1, name: ignite}]}\n"),
    (["sweep", "{space}", "--resume"], "nothing to resume", GOOD),
    (["sweep"], "the following arguments are required", None),
    # round two: spaces that pass the schema but used to fail after writing the store
    (["sweep", "{space}"], "search_alg.seed -1 is out of range",
     "name: x\ntrial: {regularizer: ignite}\nobjective: val_loss\nsearch_alg: {name: optuna, seed: -1}\n"
     "search: {regularizer.epsilon: {loguniform: [0.01, 1]}}\n"),
    (["sweep", "{space}"], "search_alg.seed 4294967296 is out of range",
     "name: x\ntrial: {regularizer: ignite}\nobjective: val_loss\nsearch_alg: {name: random, seed: 4294967296}\n"
     "search: {regularizer.epsilon: {loguniform: [0.01, 1]}}\n"),
    (["sweep", "{space}"], "make both bounds multiples of q",
     "name: x\ntrial: {regularizer: ignite}\nsearch: {regularizer.epsilon: {quniform: [0.05, 1, 0.1]}}\n"),
    (["sweep", "{space}"], "make both bounds multiples of q",
     "name: x\ntrial: {regularizer: ignite}\nsearch: {regularizer.epsilon: {qloguniform: [0.01, 1, 0.03]}}\n"),
    *[(["sweep", "{space}"], f"{name} needs q > 0 (got [{args}])",  # pass 17: q = 0 divided by zero
       f"name: x\ntrial: {{regularizer: ignite}}\nsearch: {{{key}: {{{name}: [{args}]}}}}\n")
      for name, key, args in [("quniform", "regularizer.epsilon", "0.1, 1.0, 0"), ("qrandint", "seed", "1, 4, 0"),
                              ("qlograndint", "seed", "1, 4, 0"), ("qrandint", "seed", "1, 4, -1")]],
    (["sweep", "{space}"], "search.seed: Ray Tune refuses {qrandint: [8, 16, 100]} (There is no multiple",  # pass 18
     "name: x\nsearch: {seed: {qrandint: [8, 16, 100]}}\n"),
    (["sweep", "{space}"], "grace_period 50 exceeds scheduler.max_t 10",
     "name: x\nobjective: val_loss\nscheduler: {name: asha, grace_period: 50, max_t: 10}\n"),
    (["sweep", "{space}"], "variant 2: axis 'seed' has no values", "name: x\nvariants:\n  - {seed: [0]}\n  - {seed: []}\n"),
    (["sweep", "{space}"], "randn can draw",
     "name: x\ntrial: {regularizer: ignite}\nsearch: {regularizer.epsilon: {randn: [0.1, 0.1]}}\n"),
    (["sweep", "{space}"], "randn can draw",
     "name: x\ntrial: {regularizer: ignite}\nsearch: {regularizer.epsilon: {randn: [0.5, 0.2]}}\n"),
    (["sweep", "{space}"], "uniform can draw",
     "name: x\nsearch: {baseline_options.learning_rate: {uniform: [-1, 1]}}\n"),
    (["sweep", "{space}"], "nested more than 50 levels deep", "name: x\ntrial: " + "[" * 1000 + "]" * 1000 + "\n"),
    (["sweep", "{space}"], "nested more than 50 levels deep", "name: x\ntrial: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n"),
    (["sweep", "{space}"], "num_samples: true is a YAML boolean", "name: x\nnum_samples: true\n"),
    (["sweep", "{space}"], "epochs: true is a YAML boolean", "name: x\ngrid: {baseline_options.epochs: [5, true]}\n"),
    (["sweep", "{space}"], "resources.cpu: true is a YAML boolean", "name: x\nresources: {cpu: true}\n"),
    (["sweep", "{space}", "--max-trials", "10000000"], "one sweep plans at most 100,000",
     "name: x\ngrid: {seed: " + str(list(range(1000))) + ", baseline_options.epochs: " + str(list(range(1, 1001))) + "}\n"),
    # a model size too big for this machine's memory, in the grid and sampled (checked at its largest draw)
    (["sweep", "{space}"], "GiB to train",
     "name: x\ntrial: {baseline_options: {num_layers: 8}}\ngrid: {baseline_options.hidden_size: [64, 65536]}\n"),
    *[(["sweep", "{space}"], f"search.baseline_options.hidden_size: {name} can draw 65536",
       "name: x\ntrial: {baseline_options: {num_layers: 8}}\nsearch: {baseline_options.hidden_size: {" + name + ": "
       + bounds + "}}\n") for name, bounds in (("randint", "[16, 65537]"), ("lograndint", "[16, 65537]"),
                                                ("qrandint", "[16, 65536, 16]"), ("qlograndint", "[16, 65536, 16]"),
                                                ("choice", "[64, 65536]"))],
    (["sweep", "{space}"], "search.baseline_options.hidden_size: randint can draw 65535",
     "name: x\nsearch_alg: {name: optuna, seed: 0}\nobjective: val_loss\ntrial: {baseline_options: {num_layers: 8}}\n"
     "search: {baseline_options.hidden_size: {randint: [16, 65536]}}\n"),
    # round three: sampled task options and baseline settings at their extreme draws; finite floats; names
    (["sweep", "{space}"], "search.task_options.max_samples: randint can draw 2",
     "name: x\nsearch: {task_options.max_samples: {randint: [1, 3]}}\n"),
    (["sweep", "{space}"], "search.task_options.max_samples: randint can draw 1000",
     "name: x\nsearch: {task_options.max_samples: {randint: [1000, 30000]}, baseline_options.validation_size: "
     "{choice: [2000]}}\n"),
    (["sweep", "{space}"], "max_samples=99,998 is more than TFBind8-Exact-v0's pool",
     "name: x\nsearch: {task_options.max_samples: {randint: [1000, 99999]}}\n"),
    (["sweep", "{space}"], "bo_gp_samples=1,000,000 needs about",
     "name: x\ntrial: {baseline: bo-qei}\nsearch: {baseline_options.bo_gp_samples: {choice: [500, 1000000]}}\n"),
    (["sweep", "{space}"], "num_designs=50,000 is more than",
     "name: x\nsearch: {baseline_options.num_designs: {qrandint: [100, 50000, 100]}}\n"),
    (["sweep", "{space}"], "reduction_factor: Input should be a finite number",
     "name: x\nobjective: val_loss\nscheduler: {name: asha, reduction_factor: .inf}\n"),
    (["sweep", "{space}"], "resources.gpu: Input should be a finite number", "name: x\nresources: {gpu: .inf}\n"),
    (["sweep", "{space}"], "'no_such_hparam' is no hyperparameter of the space's regularizers (ignite, none); use "
     "one of: epsilon,", "name: x\ngrid: {regularizer: [none, ignite]}\nreport: {sensitivity: [no_such_hparam]}\n"),
    (["sweep", "{space}"], "have no hyperparameters to plot against", "name: x\nreport: {sensitivity: [epsilon]}\n"),
    # round four: values Ray cannot schedule; a huge value in an error (one short line, in linear time)
    (["sweep", "{space}"], "resources.cpu 1e-300 is below Ray's smallest fraction", "name: x\nresources: {cpu: 1e-300}\n"),
    (["sweep", "{space}"], "resources.gpu 1e-05 is below Ray's smallest fraction", "name: x\nresources: {gpu: 0.00001}\n"),
    (["sweep", "{space}", "--gpus-per-trial", "1e-9"], "--gpus-per-trial 1e-09 is below Ray's smallest fraction", GOOD),
    (["sweep", "{space}"], "pad: unknown option; remove it or check its spelling (got 'xxxxxxxxxx",
     "name: x\npad: '" + "x" * 1_000_000 + "'\n"),
    (["sweep", "{space}"], "unknown option", "name: x\npad: 'http://" + "a://x" * 200_000 + "'\n"),
    (["sweep", "{space}"], "is 2,000,016 bytes; a search space is a small YAML file", "name: x\npad: '" + "x" * 2_000_000
     + "'\n"),
    (["sweep", "/dev/zero"], "is a character device, not a YAML file", None),
    (["sweep", "{outside}/" + "s" * 300 + ".yaml"], "a path is too long for this file system", None),
    (["sweep", "{space}", "--output-dir", "{outside}/" + "o" * 300], "a path is too long for this file system", GOOD),
    (["sweep", "{space}", "--output-dir", "{outside}/" + "o/" * 3000], "a path is too long for this file system", GOOD),
    (["sweep", "{space}", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1", GOOD),
    (["sweep", "{space}", "--address", "ray://127.0.0.1:1"], "no Ray cluster answers at ray://127.0.0.1:1", GOOD),
    (["sweep", "{space}", "--address", "head:99999"], "is not HOST:PORT or ray://HOST:PORT", GOOD),
    (["sweep", "{space}", "--storage-path", "file://{outside}/st?x=1"], "a file:// URI takes no query", GOOD),  # pass 18
    (["sweep", "{space}", "--storage-path", "file://otherhost{outside}/st"], "takes no host ('otherhost')", GOOD),
    (["sweep", "{space}", "--storage-path", "file://localhost{outside}/st"], "takes no host ('localhost')", GOOD),
    (["sweep", "{space}", "--output-dir", "{outside}/a\nb\x1b[2J"], "holds the control character '\\n'", GOOD),
    (["sweep", "{space}", "--storage-path", "{outside}/\x1b[31mred"], "holds the control character '\\x1b'", GOOD),
    (["sweep", "{space}", "--num-cpus", str(10**20)], "--num-cpus must be between 1 and 65,536", GOOD),
    (["sweep", "{space}"], "lower hidden_size, num_layers or num_models",
     "name: x\ntrial: {baseline: cbas, baseline_options: {num_models: 100000}}\n"),
    (["sweep", "{space}"], "bo_iterations=10 × bo_batch_size=100,000 needs about",
     "name: x\ntrial: {baseline: bo-qei, baseline_options: {bo_batch_size: 100000}}\n"),
]

REPORT = [
    (["report", "no-such-sweep"], "no results at"),
    (["report", "{empty}"], "no results at"),
    (["report", "{bad}/garbage.parquet"], "not a Parquet file"),
    (["report", "{bad}/truncated.parquet"], "not a Parquet file"),
    (["report", "{bad}/foreign.parquet"], "not a results table"),
    (["report", "{bad}/empty_table.parquet"], "results table is empty"),
    (["report", "{bad}/errors_only.parquet"], "no finished trials"),
    (["report", "{bad}/corrupt_record"], "not a sweep record"),
    (["report", "{bad}/foreign_record"], "not a sweep record"),
    (["report", "{bad}/lost_store"], "no MLflow store at"),
    (["report", "{bad}/text.parquet"], "not a Parquet file"),
]

DATA = [
    (["data", "bogus"], "invalid choice"),
    (["data", "verify", "--task", "nope"], "invalid choice"),
    (["data", "verify", "--data-dir", "{empty}"], "missing"),
    (["data", "verify", "--task", "tf_bind_8", "--data-dir", "{empty}"], "tf_bind_8"),
    (["data"], "the following arguments are required"),
]


@pytest.fixture
def places(tmp_path_factory, monkeypatch):
    """The working folder (must stay empty) and the placeholders' paths, all outside it."""
    outside = tmp_path_factory.mktemp("outside")
    work = tmp_path_factory.mktemp("work")
    (outside / "plain.txt").write_text("not a folder")
    (outside / "empty").mkdir()
    monkeypatch.chdir(work)
    return work, {"outside": str(outside), "file": str(outside / "plain.txt"), "empty": str(outside / "empty")}


def fill(argv: list[str], values: dict[str, str]) -> list[str]:
    return [arg.format(**values) for arg in argv]


def fails_cleanly(argv: list[str], needle: str, work: Path, capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert "\n" not in err and "Traceback" not in err, err
    assert len(err) < 2000, f"one short line, not {len(err):,} characters: {err[:300]}"
    assert err.startswith("ignite-mbo"), err
    assert needle in err, err
    assert list(work.iterdir()) == [], f"bad input must write nothing: {list(work.iterdir())}"


@pytest.mark.parametrize(("argv", "needle"), RUN, ids=[" ".join(argv) for argv, _ in RUN])
def test_run(argv, needle, places, capsys, design_bench_dir, monkeypatch):
    work, values = places
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    fails_cleanly(fill(argv, values), needle, work, capsys)


@pytest.mark.parametrize(("argv", "needle", "space"), SWEEP, ids=[f"{i}-{' '.join(a[2:])}" for i, (a, _, _) in enumerate(SWEEP)])
def test_sweep(argv, needle, space, places, capsys, design_bench_dir, monkeypatch, tmp_path_factory):
    work, values = places
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if space is not None:
        path = Path(values["outside"]) / "space.yaml"
        path.write_bytes(space) if isinstance(space, bytes) else path.write_text(space)
        values = {**values, "space": str(path)}
    fails_cleanly(fill(argv, values), needle, work, capsys)


def test_a_sampled_model_size_that_fits_is_accepted(tmp_path, design_bench_dir):
    """The largest draw of every sampled size is checked against memory (and a fitting one passes)."""
    from ignite_mbo.platform.plan import load_tasks
    from ignite_mbo.platform.space_checks import largest_draw
    from ignite_mbo.platform.spaces import load_spec

    path = tmp_path / "space.yaml"
    path.write_text("name: x\ntrial: {baseline_options: {num_layers: 2}}\n"
                    "search: {baseline_options.hidden_size: {lograndint: [16, 1025]}, baseline_options.epochs: "
                    "{randint: [1, 100000]}}\n")
    spec = load_spec(path)
    assert set(load_tasks(spec.trials(), str(design_bench_dir), spec.search)) == {"TFBind8-Exact-v0[]"}
    assert largest_draw("k", {"randint": [16, 65537]}) == 65536, "Tune's randint excludes its upper bound"
    assert largest_draw("k", {"qrandint": [16, 1000, 16]}) == 992
    assert largest_draw("k", {"choice": [512, 8, "x"]}) == 512
    assert largest_draw("k", {"randn": [0, 1]}) >= 6


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory):
    """Results tables and sweep folders that are broken in one way each."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("bad")
    good = pd.DataFrame([{"trial_id": "t", "status": "TERMINATED", "task": "TFBind8-Exact-v0", "baseline": "grad-ascent",
                          "regularizer": "none", "seed": 0, "score_100th": 0.9, "score_80th": 0.8, "score_50th": 0.7,
                          "regularizer_affects_search": True}])
    good.to_parquet(folder / "good.parquet")
    (folder / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / "truncated.parquet").write_bytes((folder / "good.parquet").read_bytes()[:-40])
    (folder / "text.parquet").write_text("trial_id,status\n")
    pd.DataFrame({"a": [1, 2]}).to_parquet(folder / "foreign.parquet")
    good.iloc[:0].to_parquet(folder / "empty_table.parquet")
    good.assign(status="ERROR").to_parquet(folder / "errors_only.parquet")
    for name, record in (("corrupt_record", "{not json"), ("foreign_record", '{"hello": "world"}'),
                         ("lost_store", None)):
        (folder / name).mkdir()
        good.to_parquet(folder / name / "results.parquet")
        if record is None:
            import json

            record = json.dumps({"spec": {"name": "x"}, "tracking_uri": f"sqlite:///{folder / name / 'gone.db'}",
                                 "experiment": "x", "parent_run_id": "0", "storage_path": str(folder),
                                 "experiment_path": str(folder / name)})
        (folder / name / "sweep.json").write_text(record)
    return folder


@pytest.mark.parametrize(("argv", "needle"), REPORT, ids=[" ".join(argv) for argv, _ in REPORT])
def test_report(argv, needle, places, capsys, bad_results):
    work, values = places
    before = sorted(p.name for p in bad_results.rglob("*"))
    fails_cleanly(fill(argv, {**values, "bad": str(bad_results)}), needle, work, capsys)
    assert sorted(p.name for p in bad_results.rglob("*")) == before, "nothing written next to the input either"


@pytest.mark.parametrize(("argv", "needle"), DATA, ids=[" ".join(argv) for argv, _ in DATA])
def test_data(argv, needle, places, capsys, monkeypatch):
    work, values = places
    monkeypatch.delenv("IGNITE_MBO_DATA_DIR", raising=False)
    fails_cleanly(fill(argv, values), needle, work, capsys)


@pytest.fixture
def trickling_hub():
    """A fake Hugging Face endpoint on 127.0.0.1: file metadata at once, then the body at 1 byte/s until
    ``stop`` is set. Yields (url, stop)."""
    import http.server
    import threading

    stop = threading.Event()

    class Trickle(http.server.BaseHTTPRequestHandler):
        def _headers(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.send_header("ETag", '"0123456789abcdef"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.end_headers()

        def do_HEAD(self) -> None:  # noqa: N802
            self._headers()

        def do_GET(self) -> None:  # noqa: N802
            self._headers()
            try:
                for _ in range(60):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    if stop.wait(1):  # not time.sleep, which the test replaces
                        break
            except OSError:
                pass

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", stop
    stop.set()
    server.shutdown()
    server.server_close()


def test_a_download_that_trickles_ends_within_its_deadline(trickling_hub, places, capsys, monkeypatch, tmp_path):
    """Headers then 1 byte/s never trips a per-read timeout: the overall deadline ends it, one line.

    The download thread left behind goes on (retrying with huggingface_hub's waits) after the command has
    failed; it is ended inside this test, so that its retry warnings cannot land in a later test's stderr."""
    import threading

    from ignite_mbo.tasks import download

    trickling_hub, stop = trickling_hub
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub's waits between retries
    work, values = places
    monkeypatch.setattr(download, "DEADLINE_FLOOR_S", 3.0, raising=False)
    monkeypatch.setattr(download, "SLOWEST_RATE", 10**9, raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", trickling_hub)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    data = Path(values["outside"]) / "data"
    started = time.monotonic()
    argv = ["data", "download", "--task", "tf_bind_8", "--data-dir", str(data)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "".join(err), err
    assert err[-1].startswith("ignite-mbo data: error:") and f"from {trickling_hub} did not finish within" in err[-1]
    assert list(work.iterdir()) == []
    assert time.monotonic() - started < 30
    assert not data.exists() or not any(data.rglob("*")), "nothing half-written in the data dir"

    stop.set()  # the server cuts the body short; the abandoned thread's retries find nothing and give up
    left = [thread for thread in threading.enumerate() if thread.name.startswith("download ")]
    for thread in left:
        thread.join(30)
    assert left and not any(thread.is_alive() for thread in left)


SUBPROCESS = [
    ["run", "--seed", str(2**32)],
    ["run", "--device", "cuda"],
    ["run", "--tracking-uri", "sqlite:///no/such/folder/mlflow.db"],
    ["sweep", "{space}", "--storage-path", "bogus://x"],
    ["report", "no-such-sweep"],
]


@pytest.mark.parametrize("argv", SUBPROCESS, ids=[" ".join(argv) for argv in SUBPROCESS])
def test_through_the_console_script(argv, tmp_path_factory, design_bench_dir):
    """The installed `ignite-mbo`, as a user runs it: the same one line, exit 2, nothing written."""
    work, outside = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("outside")
    (outside / "space.yaml").write_text(GOOD)
    bin_dir = Path(sys.executable).parent
    completed = subprocess.run([str(bin_dir / "ignite-mbo"), *fill(argv, {"space": str(outside / "space.yaml")})],
                               cwd=work, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)})
    err = completed.stderr.strip()
    assert completed.returncode == 2 and "\n" not in err and "Traceback" not in err, err
    assert completed.stdout == "" and list(work.iterdir()) == []


def test_the_suite_has_at_least_a_hundred_cases():
    assert len(RUN) + len(SWEEP) + len(REPORT) + len(DATA) + len(SUBPROCESS) >= 100


# ---- round two: tracking stores that misbehave (fakes on 127.0.0.1, bounded in time) ---------------

@pytest.fixture
def fake_server():
    """Start an HTTP server on 127.0.0.1 whose GET/POST answer is ``handler(path) -> (status, type, body)``
    (a None answer: never reply). Yields a function that starts one and returns its URL."""

    def answering(answer):
        def reply(handler):
            found = answer(handler.path)
            if found is None:
                time.sleep(60)  # accept the connection, never answer
                return
            status, kind, body = found
            handler.send_response(status)
            handler.send_header("Content-Type", kind)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        return reply

    with http_servers() as start:
        yield lambda answer: start(answering(answer))


def test_a_server_that_is_not_mlflow_is_named_as_such(fake_server, places, capsys):
    work, _ = places
    url = fake_server(lambda path: (200, "text/plain", b"hello, I am a web page"))
    fails_cleanly(["run", "--tracking-uri", url], "answers, but not as an MLflow server", work, capsys)


def test_a_server_that_never_answers_fails_within_seconds(fake_server, places, capsys, monkeypatch,
                                                         design_bench_dir):
    """It answers the probe (so it looks like MLflow), then hangs on every API call: the timeout on MLflow's
    HTTP calls turns that into one line, in seconds."""
    work, _ = places
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = fake_server(lambda path: (200, "application/json", b"{}") if "experiments/search" in path else None)
    started = time.monotonic()
    fails_cleanly(["run", "--fidelity", "quick", "--quiet", "--tracking-uri", url], "did not answer in time",
                  work, capsys)
    assert time.monotonic() - started < 60


def test_mlflow_http_calls_get_a_timeout_unless_the_user_set_one(monkeypatch):
    from ignite_mbo.store_guard import HTTP_TIMEOUT_S, bound_http_calls

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    bound_http_calls()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == str(HTTP_TIMEOUT_S)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"


def _tables(path: Path) -> list[str]:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as connection:
        return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'"))


STORES = [
    ("foreign", "another program's SQLite database"),
    ("garbage", "not an SQLite database"),
    ("text", "not an SQLite database"),
    ("damaged", "mlflow.db"),
]


@pytest.mark.parametrize(("kind", "needle"), STORES, ids=[kind for kind, _ in STORES])
def test_a_foreign_or_corrupt_sqlite_store_is_refused_and_left_as_it_was(kind, needle, places, capsys,
                                                                        design_bench_dir, monkeypatch):
    import sqlite3
    from contextlib import closing

    work, values = places
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    path = Path(values["outside"]) / "mlflow.db"
    if kind == "foreign":
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
            connection.execute("INSERT INTO contacts VALUES ('ada', '123')")
            connection.commit()
    elif kind == "garbage":
        path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    elif kind == "text":
        path.write_text("these are my notes, not a database\n")
    else:  # an MLflow-like database whose pages were overwritten in the middle
        with closing(sqlite3.connect(path)) as connection:
            for table in ("experiments", "runs", "alembic_version"):
                connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, value TEXT)")
            connection.executemany("INSERT INTO runs (value) VALUES (?)", [("x" * 500,)] * 200)
            connection.commit()
        data = bytearray(path.read_bytes())
        data[8192:8192 + 4096] = os.urandom(4096)
        path.write_bytes(bytes(data))
    before = path.read_bytes()
    for command in (["run", "--fidelity", "quick", "--tracking-uri", f"sqlite:///{path}"],
                    ["sweep", str(Path(values["outside"]) / "space.yaml"), "--tracking-uri", f"sqlite:///{path}"]):
        (Path(values["outside"]) / "space.yaml").write_text(GOOD)
        fails_cleanly(command, needle, work, capsys)
        assert path.read_bytes() == before, "the user's file must not change"
    if kind == "foreign":
        assert _tables(path) == ["contacts"]


def test_credentials_in_a_tracking_uri_are_masked(places, capsys, fake_server):
    work, _ = places
    for url in ("http://alice:s3cret-pw@127.0.0.1:9",
                fake_server(lambda path: (200, "text/plain", b"hi")).replace("http://", "http://alice:s3cret-pw@")):
        fails_cleanly(["run", "--tracking-uri", url], "alice:***@", work, capsys)
    from ignite_mbo.store_guard import mask

    assert mask("see https://u:p@h:1/x and sqlite:///a:b@c") == "see https://u:***@h:1/x and sqlite:///a:b@c"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs, mounted for the test (needs root: the suite runs as root in CI)."""
    with tmpfs(tmp_path / "tiny", "256k") as mount:
        if mount is None:
            pytest.skip("cannot mount a tmpfs here")
        yield mount


def test_a_full_disk_under_the_store_gives_one_line(tiny_disk, places, capsys, design_bench_dir, monkeypatch):
    work, _ = places
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    (tiny_disk / "filler").write_bytes(b"\0" * (200 * 1024))
    fails_cleanly(["run", "--fidelity", "quick", "--quiet", "--tracking-uri", f"sqlite:///{tiny_disk / 'mlflow.db'}"],
                  "the disk holding the tracking store is full", work, capsys)
    assert not (tiny_disk / "mlflow.db").exists(), "no half-built store is left"


@pytest.fixture
def no_inodes_left(tmp_path):
    """A tmpfs with every inode used: nothing more can be created in it (needs root, as the full disk)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=8", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        for number in range(100):
            (mount / f"f{number}").touch()
    except OSError:
        pass
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("flag", ["--output-dir", "--storage-path"])
def test_a_folder_that_cannot_be_created_fails_before_the_store(flag, no_inodes_left, places, capsys,
                                                               design_bench_dir, monkeypatch):
    work, values = places
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    space = Path(values["outside"]) / "space.yaml"
    space.write_text(GOOD)
    store = Path(values["outside"]) / "mlflow.db"
    fails_cleanly(["sweep", str(space), "--quiet", "--tracking-uri", f"sqlite:///{store}", flag,
                   str(no_inodes_left / "x")],
                  "cannot create or write", work, capsys)
    assert not store.exists() and not (Path(values["outside"]) / "mlartifacts").exists()


NOT_FILES = [  # (file name, the command given it, what the error says of a FIFO and of a link to /dev/zero)
    ("mlflow.db", lambda path: ["run", "--tracking-uri", f"sqlite:///{path}"],  # MLflow's sqlite driver would hang
     ("is not a regular file", "is not a regular file")),
    ("space.yaml", lambda path: ["sweep", str(path)],  # the read would block, or read zeros for ever
     ("is a FIFO (named pipe)", "is a symlink to /dev/zero (a character device)")),
]


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
@pytest.mark.parametrize(("name", "command", "needles"), NOT_FILES, ids=[name for name, _, _ in NOT_FILES])
def test_a_path_that_is_not_a_regular_file_is_named_so_before_it_is_opened(name, command, needles, kind, places,
                                                                           capsys):
    work, values = places
    path = Path(values["outside"]) / name
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    fails_cleanly(command(path), needles[0] if kind == "fifo" else needles[1], work, capsys)
