"""The ``medimg`` command: thin wrappers over the package's functions.

Every :class:`MedimgError` becomes one line on stderr and exit code 2; every path a command is given is checked
first (:data:`PATH_OPTIONS`), so a wrong one is refused before anything is read or written. Anything else that
escapes is a bug: one line naming it and the file with the whole traceback, exit code 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from medimg.errors import EXIT_USAGE, MedimgError


def _cmd_datasets(args) -> int:
    from medimg.data.summary import dataset_table

    rows = dataset_table()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    header = ("name", "kind", "modality", "classes", "paper", "available")
    table = [[str(r[h] if r[h] is not None else "-") if h != "paper" else ("yes" if r[h] else "") for h in header]
             for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return 0


def _cmd_describe(args) -> int:
    from medimg.data import DataConfig, describe, format_description, prepare
    from medimg.record_options import from_args

    config = from_args(DataConfig, args)
    info = describe(prepare(config, progress=not args.json and sys.stderr.isatty()))
    print(json.dumps(info, indent=1) if args.json else format_description(info))
    return 0


def _trainer_settings(args):
    from medimg.training.trainer import TrainerSettings
    from medimg.record_options import from_args

    return from_args(TrainerSettings, args)


def _cmd_finetune(args) -> int:
    from contextlib import nullcontext

    from medimg.atomic import is_main_process, run_lock
    from medimg.finetune.config import FinetuneConfig
    from medimg.record_options import from_args

    config = from_args(FinetuneConfig, args)
    # the folder's lock before torch and Lightning load: a second process given the same --out is refused at once
    with run_lock(Path(args.out), command=f"medimg finetune {config.method} on {config.dataset}") \
            if is_main_process() else nullcontext():
        from medimg.finetune.train import finetune

        metrics = finetune(config, Path(args.out), settings=_trainer_settings(args), resume=args.resume,
                           force=args.force)
    if metrics is None:  # a DDP process other than the first: it trained its shard; the first reports
        return 0
    test = metrics["test"]
    print(f"{metrics['dataset']} {metrics['method']} ({metrics['arch']}, seed {metrics['seed']}): test accuracy "
          f"{test['accuracy']:.3f} (majority {test['majority_accuracy']:.3f}), balanced {test['balanced_accuracy']:.3f}, "
          f"loss {test['loss']:.3f}; best epoch {metrics['best_epoch']}; results in {args.out}")
    return 0


def _cmd_pretrain_ssl(args) -> int:
    from medimg.ssl.config import SSLConfig
    from medimg.atomic import is_main_process
    from medimg.record_options import from_args
    from medimg.ssl.run import pretrain_ssl

    if args.profile:
        from medimg.study.pretraining import run_stage

        for path in run_stage(args.profile, pools=args.pool, inits=args.init_of_stage, methods=args.method_of_stage,
                              resume=args.resume, force=args.force, stage=args.stage):
            print(f"{path}")
        return 0
    if not args.datasets or not args.out:
        raise MedimgError("pretrain-ssl needs --profile NAME (the profile's pretraining stage), or --datasets NAME "
                          "[NAME ...] and --out CKPT.safetensors")
    from medimg.ssl.curve import CurveTarget
    from medimg.ssl.methods import METHODS

    config = from_args(SSLConfig, args)
    out = pretrain_ssl(config, Path(args.out), trainer=_trainer_settings(args), force=args.force, resume=args.resume,
                       curve_targets=tuple(CurveTarget(d.split(":")[0], int(d.split(":")[1]) if ":" in d else None)
                                           for d in args.curve_targets or ()),
                       curve_every=args.curve_every, reference_seeds=tuple(range(args.reference_seeds)),
                       imagenet_weights=args.imagenet_reference)
    if not is_main_process():  # a DDP process other than the first: the first writes and reports
        return 0
    print(f"wrote {out}: {config.arch} pretrained with {METHODS[config.method].name} from {config.init} weights on "
          f"{', '.join(config.datasets)}")
    return 0


def _cmd_weights_import(args) -> int:
    from medimg.models.tflite_import import import_mobilenet_v2_tflite

    out = import_mobilenet_v2_tflite(Path(args.file), Path(args.out), force=args.force)
    print(f"wrote {out} (timm mobilenetv2_100, 1001 classes, inputs scaled to [-1, 1])")
    return 0


def _cmd_evaluate(args) -> int:
    from medimg.compare.report import EVALUATION_FILE, evaluate_run

    result = evaluate_run(args.run_dir, n_boot=args.n_boot, level=args.level, random_state=args.seed, force=args.force)
    pct = int(round(args.level * 100))
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "mcc", "ece"):
        m = result["metrics"][name]
        print(f"{name:>18} {m['estimate']:.3f}  {pct}% CI [{m['low']:.3f}, {m['high']:.3f}]")
    print(f"all {len(result['metrics'])} metrics in {Path(args.run_dir) / EVALUATION_FILE} and evaluation.md")
    return 0


def _cmd_compare(args) -> int:
    from medimg.compare.comparison import compare_runs, write_comparison

    comparison = compare_runs(args.run_dirs, by=args.by, metric=args.metric, level=args.level, alpha=args.alpha)
    out = write_comparison(comparison, Path(args.out), force=args.force)
    for row in comparison.tests.itertuples():
        verdict = "significant" if row.significant else "not significant"
        print(f"{row.dataset}: {row.arm_a} vs {row.arm_b}: {row.metric} difference {row.mean_difference:+.3f}, "
              f"{row.test} p {row.p:.3g}, Holm p {row.p_holm:.3g} ({verdict}); better: {row.winner}")
    for note in comparison.notes:
        print(f"note: {note}")
    print(f"tables and figures in {out}")
    return 0


def _cmd_gradcam(args) -> int:
    from medimg.explain.gradcam import explain_run

    result = explain_run(Path(args.run_dir), n=args.n, seed=args.seed, out=Path(args.out), force=args.force)
    s = result.summary()
    print(f"Grad-CAM of {result.n} test images at layer {result.layer} ({result.layer_size[0]}x{result.layer_size[1]}); "
          f"randomised-weights map similarity (Spearman) {s['randomisation']['spearman']:.2f}; deletion AUC "
          f"{s['deletion']['auc_mean']:.3f} vs {s['deletion']['random_auc_mean']:.3f} in random order; in {args.out}")
    return 0


def _study_option_error(args) -> str | None:
    """The one-line error for options of ``medimg study`` that do not go together, or None."""
    if args.jobs < 1:
        return f"--jobs {args.jobs} is out of range: use 1 or more"
    if args.img_per_s is not None and args.img_per_s <= 0:
        return (f"--img-per-s {args.img_per_s} is out of range: give the positive figure benchmarks/bench_train_step.py "
                f"measured")
    slurm_only = [name for name, value in (("--partition", args.partition), ("--account", args.account),
                                           ("--wait", args.wait)) if value]
    if slurm_only and args.executor != "slurm":
        return (f"{', '.join(slurm_only)} {'is' if len(slurm_only) == 1 else 'are'} for --executor slurm (the other "
                f"executors run here and always wait): add --executor slurm, or drop {' and '.join(slurm_only)}")
    if args.executor == "slurm" and args.jobs != 1:
        return ("--jobs is for --executor local or submitit-local: on SLURM every chapter is a job and the cluster "
                "decides how many run at once; drop --jobs")
    return None


def _cmd_study(args) -> int:
    from medimg.study.schedule import run_study

    error = _study_option_error(args)
    if error:
        print(f"medimg: error: {error}", file=sys.stderr)
        return 2
    if args.plan:
        from medimg.study.profiles import load_profile, study_root, STUDY_FILE
        from medimg.study.cost import plan_text

        p = load_profile(args.profile, study_root() / STUDY_FILE)
        print(plan_text(p, args.img_per_s, args.only))
        if args.executor == "slurm":
            from medimg.study.cluster import resources_text

            print("\n" + resources_text(p, args.img_per_s, args.only, args.partition, args.account))
        return 0
    if args.executor == "local":
        report = run_study(args.profile, force=args.force, build=not args.no_build, only=args.only, jobs=args.jobs,
                           benchmark=not args.no_benchmark)
        how = f"{args.jobs} job(s)"
    else:
        from medimg.study.cluster import run_cluster

        report = run_cluster(args.profile, executor=args.executor, force=args.force, build=not args.no_build,
                             only=args.only, jobs=args.jobs, benchmark=not args.no_benchmark, partition=args.partition,
                             account=args.account, wait=args.wait, img_per_s=args.img_per_s)
        how = f"--executor {args.executor}" + (f", {args.jobs} job(s) at once" if args.executor != "slurm" else "")
    stale = f" ({len(report.stale)} of them because their parameters changed)" if report.stale else ""
    n = len(report.executed)
    print(f"study {args.profile}: {n} chapter{'s' * (n != 1)} executed{stale}, {len(report.reused)} reused, "
          f"{len(report.failed)} failed in {report.wall_seconds:.0f} s with {how}")
    running = getattr(report, "running", {})
    if running:
        print(f"{len(running)} job(s) queued or running on SLURM ({', '.join(running.values())}), their logs in "
              f"{report.log_folder}: run the same command again when the jobs are done: finished chapters are skipped "
              f"and the book is built")
    for path, why in report.failed.items():
        print(f"FAILED {path}: {why}", file=sys.stderr)
    return 1 if report.failed else 0


# every option (or positional argument) of every command that names a path, and what it must be
# (medimg.paths.check_path); a new command's paths join this table, and tests/cli/test_paths.py tries each
PATH_OPTIONS: dict[str, dict[str, str]] = {
    "describe": {"dataset": "input-dir-or-name"},
    "finetune": {"dataset": "input-dir-or-name", "intermediate": "input-dir-or-name", "out": "output-dir"},
    "pretrain-ssl": {"datasets": "input-dir-or-name", "out": "output-file"},
    "evaluate": {"run_dir": "input-dir"},
    "compare": {"run_dirs": "input-dir", "out": "output-dir"},
    "gradcam": {"run_dir": "input-dir", "out": "output-dir"},
    "weights import-tflite": {"file": "input-file", "out": "output-file"},
}


def command_name(args) -> str:
    return " ".join(n for n in (args.command, getattr(args, "weights_command", None)) if n)


def check_paths(args) -> None:
    """Every path of the command ``args`` holds, checked as :data:`PATH_OPTIONS` says (one line on the first bad one)."""
    from medimg.paths import check_path

    for dest, kind in PATH_OPTIONS.get(command_name(args), {}).items():
        values = getattr(args, dest, None)
        option = dest if dest in ("dataset", "run_dir", "run_dirs", "file") else f"--{dest.replace('_', '-')}"
        for value in values if isinstance(values, (list, tuple)) else [values]:
            if value is not None:
                check_path(value, kind, option)
    weights = getattr(args, "weights", None)  # a weights file, or a keyword (auto, timm, tflite, ...)
    if weights and (os.sep in weights or weights.endswith((".pth", ".pt", ".safetensors", ".bin"))):
        check_path(weights, "input-file", "--weights")


def build_parser() -> argparse.ArgumentParser:
    from medimg.data.pipeline import DataConfig
    from medimg.record_options import add_options

    parser = argparse.ArgumentParser(prog="medimg", description=__doc__.splitlines()[0])
    parser.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                        help="refuse images larger than N pixels (default Pillow's 89,478,485; "
                             "also $MEDIMG_MAX_IMAGE_PIXELS): raise it for a large image you trust")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the registered datasets and whether they are available here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("describe", help="split sizes, class counts, channels, image sizes and duplicates of a dataset")
    p.add_argument("dataset", help="a registered name (see 'medimg datasets') or the path of an image folder")
    add_options(p, DataConfig, skip=("dataset",))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_describe)

    from medimg.ssl.config import PRETRAINING_METHODS, SSLConfig
    from medimg.finetune.config import FinetuneConfig
    from medimg.training.trainer import TrainerSettings

    hardware = "hardware (one code path: CPU, a GPU, or DDP over several)"
    p = sub.add_parser("finetune", help="fine-tune one arm (tl, ssl, tl+ssl, scratch) on one dataset into RUN_DIR")
    add_options(p, FinetuneConfig)
    p.add_argument("--out", required=True, help="the run directory to write")
    p.add_argument("--resume", action="store_true", help="continue an unfinished run in --out")
    p.add_argument("--force", action="store_true", help="replace whatever is in --out")
    add_options(p, TrainerSettings, title=hardware)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("pretrain-ssl", help="self-supervised pretraining (SimCLR, VICReg) of a backbone on the training images of some datasets "
                       "(--profile: every checkpoint of a study profile's pretraining stage)")
    p.add_argument("--profile", help="pretrain the checkpoints of this study.yml profile's 'pretraining' section into "
                   "results/PROFILE/ssl/ (finished ones are kept); the SSL options below are then ignored")
    p.add_argument("--stage", default="pretraining",
                   help="with --profile: the section of the profile to pretrain (default pretraining, the stage the "
                        "book reads; quick's pretraining_next is the stage that will replace it)")
    p.add_argument("--pool", nargs="+", help="with --profile: only these pools (e.g. grey)")
    p.add_argument("--init-of-stage", nargs="+", choices=("random", "imagenet"), metavar="INIT",
                   help="with --profile: only these initialisations (random, imagenet)")
    p.add_argument("--method-of-stage", nargs="+", choices=PRETRAINING_METHODS, metavar="METHOD",
                   help=f"with --profile: only these methods ({', '.join(PRETRAINING_METHODS)})")
    add_options(p, SSLConfig)
    next(a for a in p._actions if a.dest == "datasets").required = False  # not with --profile
    p.add_argument("--out", help="CKPT.safetensors to write")
    p.add_argument("--curve-targets", nargs="+", metavar="NAME",
                   help="measure the learning curve (linear probe and kNN on validation) on these datasets, into "
                        "CKPT's .curve.csv (NAME:N: the probes train on at most N images, as the arms' cap)")
    p.add_argument("--curve-every", type=int, default=250, help="steps between points of the curve (default 250)")
    p.add_argument("--reference-seeds", type=int, default=1,
                   help="with --curve-targets: random initialisations read as references (default 1)")
    p.add_argument("--imagenet-reference", help="with --curve-targets: ImageNet weights read as a reference (e.g. tflite)")
    p.add_argument("--resume", action="store_true", help="go on from the saved state of an interrupted run")
    p.add_argument("--force", action="store_true", help="replace an existing CKPT")
    add_options(p, TrainerSettings, title=hardware)
    p.set_defaults(func=_cmd_pretrain_ssl)

    p = sub.add_parser("evaluate", help="every metric of a run with bootstrap intervals, written beside it")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the test images (default 2000)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--force", action="store_true", help="recompute an existing evaluation.json")
    p.set_defaults(func=_cmd_evaluate)

    from medimg.compare.headline import ALPHA, HEADLINE

    p = sub.add_parser("compare", help="compare arms on the same test images: tables, tests and figures")
    p.add_argument("run_dirs", nargs="+", help="finished run directories (several datasets and seeds welcome)")
    p.add_argument("--by", default="method", help="the setting that defines the arms: method (default), augment, "
                   "balance, double (single vs double fine-tuning) or any other config field")
    p.add_argument("--metric", default="accuracy", choices=HEADLINE, help="the metric that is tested")
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--alpha", type=float, default=ALPHA, help="significance level after Holm's correction")
    p.add_argument("--out", required=True, help="directory for the CSV and Markdown tables and the PNG figures")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("gradcam", help="Grad-CAM maps of a run's test images, with a sanity check and deletion score")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--n", type=int, default=16, help="how many test images (correct and wrong, per class)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image choice")
    p.add_argument("--out", required=True, help="directory for gradcam.json, gradcam.npz and gradcam.png")
    p.add_argument("--force", action="store_true", help="replace an existing result in --out")
    p.set_defaults(func=_cmd_gradcam)

    p = sub.add_parser("study", help="execute a profile of study.yml into book/PROFILE with papermill and build the book")
    p.add_argument("--profile", default="quick", help="quick (CPU, default), smoke (minutes) or paper (GPU)")
    p.add_argument("--force", action="store_true", help="re-execute chapters whose notebooks exist (finished runs "
                   "are still reused; delete results/PROFILE to retrain)")
    p.add_argument("--only", help="only the chapters whose path contains this text, e.g. a dataset name")
    p.add_argument("--no-build", action="store_true", help="execute the chapters but do not build the book")
    p.add_argument("--jobs", type=int, default=1, help="independent chapters run at once (each kernel gets "
                   "cores/jobs threads)")
    p.add_argument("--no-benchmark", action="store_true", help="skip the half-minute speed benchmark recorded with "
                   "the study's time")
    p.add_argument("--plan", action="store_true", help="print every chapter and run with its settings and cost, "
                   "and train nothing")
    p.add_argument("--img-per-s", type=float, help="with --plan: training images per second measured on the machine "
                   "that will run it (benchmarks/bench_train_step.py), for hours; with --executor slurm also the speed "
                   "the jobs' time limits assume (default: the profile's slurm table)")
    from medimg.study.cluster import ACCOUNT_ENV, EXECUTORS, PARTITION_ENV

    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local (default): the chapters' kernels run here, --jobs at once; slurm: each chapter a SLURM "
                   "job (submitit), chained by what it reads, with the resources of the profile's slurm table (--plan "
                   "shows them); submitit-local: the same jobs as subprocesses here")
    p.add_argument("--partition", help=f"with --executor slurm: the partition (default ${PARTITION_ENV}, else the "
                   "cluster's default)")
    p.add_argument("--account", help=f"with --executor slurm: the account (default ${ACCOUNT_ENV}, else the "
                   "cluster's default)")
    p.add_argument("--wait", action="store_true", help="with --executor slurm: wait for the jobs, report each and build "
                   "the book (without it: submit, print the job ids and return; run the same command again when they "
                   "are done)")
    p.set_defaults(func=_cmd_study)

    weights = sub.add_parser("weights", help="weight files").add_subparsers(dest="weights_command", required=True)
    p = weights.add_parser("import-tflite", help="convert Google's quantised MobileNet V2 .tflite to timm weights")
    p.add_argument("file", help="mobilenet_v2_1.0_224_quant.tflite")
    p.add_argument("--out", required=True, help="OUT.safetensors")
    p.add_argument("--force", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_cmd_weights_import)
    return parser


def _show_medimg_warnings_as_lines(warnings) -> None:
    """Print medimg's own warnings as one ``medimg: warning: ...`` line each; others as Python does."""
    from medimg.errors import MedimgWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, MedimgWarning):
            print(f"medimg: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    import warnings

    _show_medimg_warnings_as_lines(warnings)
    args = build_parser().parse_args(argv)
    if args.max_image_pixels is not None:
        os.environ["MEDIMG_MAX_IMAGE_PIXELS"] = str(args.max_image_pixels)
    try:
        check_paths(args)
        from medimg.study.profiles import register_study_datasets_here

        register_study_datasets_here()  # the short names of study.yml's own folders, for every command
        return args.func(args)
    except MedimgError as err:
        print(f"medimg: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # a bug, not bad input: one line, and the traceback in a file to report
        return report_bug(err, argv if argv is not None else sys.argv[1:])


def report_bug(err: BaseException, argv: list[str]) -> int:
    """An unexpected exception: the whole traceback into ``medimg-bug-<time>.log`` in the system's temporary folder,
    one line naming it on stderr; exit code 1."""
    import tempfile
    import time
    import traceback

    log = Path(tempfile.gettempdir()) / f"medimg-bug-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    try:
        log.write_text(f"medimg {' '.join(argv)}\n\n" + "".join(traceback.format_exception(err)))
        kept = f"the traceback is in {log}"
    except OSError:
        kept = "the traceback could not be saved"
    message = " ".join(f"{type(err).__name__}: {err}".split())[:300]
    print(f"medimg: internal error (a bug in medimg, not in your input): {message}{where}; {kept}: please report it "
          f"with the command you ran", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
