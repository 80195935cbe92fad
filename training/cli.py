"""The `python -m training` command line: train (default), `evaluate` a model, `generate` synthetic CSV.

Also `costs`: rewrite an artifact's cost matrix without retraining.
This is the only module that prints. Exit status: 0 success, 2 bad data or arguments,
3 quality gate (test accuracy below --min-accuracy or a class's recall below --min-recall;
nothing written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.costs import CostError, parse_cost, parse_min_recall
from training.data import DEFAULT_FEATURES, DEFAULT_LABEL, LARGEST_READING, DataError
from training.limits import parse_limit
from training.pipeline import DEFAULT_NOVELTY_RATE

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("models/model.npz")
DEFAULT_SAMPLES = 300_000
# Synthetic readings are made in memory: training on N of them peaks at about 110 bytes each
# (1,000,000: 160 MB; 3,000,000: 378 MB), so this is about 1.3 GB. More makes no better model
# of the built-in distribution, and a typed extra zero otherwise meets the OOM killer.
MAX_SAMPLES = 10_000_000
DEFAULT_SEED = 0
EXIT_OK, EXIT_ERROR, EXIT_DATA, EXIT_GATE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _UsageError(Exception):
    """An argument combination argparse cannot check by itself; exit status 2."""


class _AppendOnce(argparse.Action):
    """``action="append"`` that refuses a second setting for the same key, which would quietly
    override the first.

    The key is all but the parsed value's last part: NAME of NAME=LO:HI, CLASS of CLASS=X,
    TRUE:ANSWER of TRUE:ANSWER=VALUE.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given = list(getattr(namespace, self.dest))
        if any(item[:-1] == values[:-1] for item in given):
            raise argparse.ArgumentError(self, f"{':'.join(values[:-1])!r} is given twice")
        setattr(namespace, self.dest, [*given, values])


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    if not names or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _units(text: str) -> tuple[str, ...]:
    # Units may be empty ("°C,,mm/s") where unknown.
    return tuple(part.strip() for part in text.split(","))


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes, got {text!r}"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _sample_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_SAMPLES} synthetic readings, got {text!r}"
        )
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number from 0 up to (not including) 1, got {text!r}"
        ) from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a number from 0 up to (not including) 1, got {text!r}"
        )
    return value


def _add_column_options(parser: argparse.ArgumentParser, training: bool) -> None:
    columns = parser.add_argument_group("CSV columns")
    columns.add_argument(
        "--features",
        type=_names,
        default=DEFAULT_FEATURES if training else None,
        metavar="A,B",
        help=f"comma-separated feature columns, in model input order (default: "
        f"{','.join(DEFAULT_FEATURES)})"
        if training
        else "comma-separated feature columns, in the model's input order "
        "(default: the model's own feature names)",
    )
    columns.add_argument(
        "--label", default=DEFAULT_LABEL, help="class label column (default: %(default)s)"
    )
    columns.add_argument(
        "--group-column",
        metavar="COLUMN",
        help="rows sharing a value here (a machine, a cycle) are never split across "
        "train / validation / test"
        if training
        else "accepted as in training; every row is scored, so it only has to exist and be "
        "filled in",
    )
    columns.add_argument(
        "--drop-invalid",
        action="store_true",
        help="skip rows with missing, non-numeric, NaN, infinite or huge (beyond "
        f"±{LARGEST_READING:g}) values (and say how many) instead of stopping at the first",
    )


def _add_decision_options(parser: argparse.ArgumentParser, command: str) -> None:
    decision = parser.add_argument_group(
        "decision and rare classes",
        "The answer is the class of least expected cost under the calibrated probabilities; "
        "without --cost every wrong answer costs 1, which is argmax.",
    )
    decision.add_argument(
        "--cost",
        type=parse_cost,
        action=_AppendOnce,
        default=[],
        metavar="TRUE:ANSWER=VALUE",
        help={
            "train": "what answering ANSWER costs when the truth is TRUE, stored in the "
            "artifact (repeatable; other wrong answers cost 1, right ones 0)",
            "evaluate": "score a candidate cost matrix instead of the model's own "
            "(repeatable; other wrong answers cost 1, right ones 0)",
            "costs": "the new matrix's entries (repeatable; other wrong answers cost 1, right "
            "ones 0; none: plain argmax)",
        }[command],
    )
    if command == "train":
        decision.add_argument(
            "--min-recall",
            type=parse_min_recall,
            action=_AppendOnce,
            default=[],
            metavar="CLASS=X",
            help="quality gate per class (repeatable): if the test recall of CLASS is below X, "
            "write nothing and exit with status 3",
        )


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the sensor classifier on built-in synthetic data (default) or a labelled "
        "CSV file, evaluate it once on a held-out test set and write the model artifact. "
        "Other commands: 'python -m training evaluate --help', 'python -m training generate --help', "
        "'python -m training costs --help'.",
        epilog="Exit status: 0 success, 2 bad data or arguments, 3 test accuracy below "
        "--min-accuracy or a class's recall below --min-recall (nothing written), "
        "130 interrupted (nothing written).",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="labelled readings: .csv, .csv.gz or .parquet (default: synthetic data)",
    )
    data.add_argument(
        "--samples",
        type=_sample_count,
        default=None,
        metavar="N",
        help=f"synthetic training readings (default: {DEFAULT_SAMPLES}); validation and test "
        "sets are independent draws of N/10 each",
    )
    data.add_argument(
        "--units",
        type=_units,
        metavar="U1,U2",
        help="units of the CSV features, in --features order, shown by the service",
    )
    data.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        metavar="F",
        help="share of CSV rows (or groups) for validation: early stopping and calibration "
        "(default: %(default)s)",
    )
    data.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.2,
        metavar="F",
        help="share of CSV rows (or groups) for the final test (default: %(default)s)",
    )
    _add_column_options(parser, training=True)
    parser.add_argument_group("physical limits").add_argument(
        "--limits",
        type=parse_limit,
        action=_AppendOnce,
        default=[],
        metavar="NAME=LO:HI",
        help="the values feature NAME can physically take; the service refuses readings outside "
        "them (repeatable; either side may be empty for open; default: temperature >= absolute "
        "zero, vibration >= 0, others open)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="PATH",
        help="where to write the model artifact (default: %(default)s, what the service reads)",
    )
    out.add_argument(
        "--report", type=Path, metavar="DIR", help="write metrics.json and PNG plots here"
    )
    out.add_argument(
        "--min-accuracy",
        type=_fraction,
        metavar="X",
        help="quality gate: if test accuracy is below X, write nothing and exit with status 3",
    )
    out.add_argument(
        "--json", action="store_true", help="print the test metrics as one JSON object"
    )
    fit = parser.add_argument_group("training")
    fit.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="same seed, same model (default: %(default)s)",
    )
    fit.add_argument(
        "--hidden",
        type=_sizes,
        default=None,
        metavar="H1,H2",
        help="hidden layer sizes (default: 64,64)",
    )
    fit.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="maximum epochs (default: enough for about 4,000 steps, 6 to 200 epochs)",
    )
    fit.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="mini-batch size (default: 512)",
    )
    fit.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        metavar="LR",
        help="peak Adam learning rate, reached after warm-up, then cosine decay (default: 0.03)",
    )
    fit.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop after N epochs without a better validation loss (default: 5)",
    )
    novelty = parser.add_argument_group("novelty")
    novelty.add_argument(
        "--novelty-rate",
        type=_rate,
        default=DEFAULT_NOVELTY_RATE,
        metavar="R",
        help="target false-alarm rate: the novelty threshold lets at most this share of "
        "validation readings be flagged novel (default: %(default)s)",
    )
    _add_decision_options(parser, "train")
    _common_options(parser)
    return parser


def build_evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training evaluate",
        description="Score an existing model artifact on labelled readings from a CSV file.",
        epilog="Exit status: 0 success, 2 bad data, arguments or model file.",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_OUT,
        metavar="PATH",
        help="model artifact (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="FILE",
        help="labelled readings: .csv, .csv.gz or .parquet",
    )
    _add_column_options(parser, training=False)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    _add_decision_options(parser, "evaluate")
    _common_options(parser)
    return parser


def build_costs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training costs",
        description="Write a copy of a model artifact with a new cost matrix, without "
        "retraining: same network and probabilities, new decisions and a new model_version. "
        "The write is atomic; --out may be the --model file itself.",
        epilog="Exit status: 0 success, 2 bad arguments or model file.",
    )
    parser.add_argument(
        "--model", type=Path, required=True, metavar="IN.npz", help="model artifact to copy"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="OUT.npz", help="where to write the copy"
    )
    _add_decision_options(parser, "costs")
    _common_options(parser)
    return parser


def build_generate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training generate",
        description="Write synthetic labelled readings (the built-in distribution) to a CSV file"
        " (.csv.gz: gzip-compressed; .parquet: Parquet), as --data reads them.",
    )
    parser.add_argument(
        "--samples",
        type=_sample_count,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help="rows (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="(default: %(default)s)")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE.csv",
        help="where to write: FILE.csv, FILE.csv.gz or FILE.parquet",
    )
    _common_options(parser)
    return parser


def _configure_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def _fit_config(args: argparse.Namespace) -> Any:
    from training.fit import FitConfig

    overrides = {
        "hidden": args.hidden,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "patience": args.patience,
    }
    return FitConfig(**{k: v for k, v in overrides.items() if v is not None})


def _terminal_size() -> tuple[int, int]:
    """Columns and lines of the terminal on stderr, 80 x 24 where it reports none.

    A pseudo-terminal whose size was never set reports 0 x 0, and tqdm then hides its bar as
    if it were below the bottom of the screen.
    """
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        return 80, 24
    return size.columns or 80, size.lines or 24


class _Progress:
    """A tqdm bar over optimizer steps on a terminal, one log line per epoch otherwise."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        self.bar: Any = None

    def start(self, total_steps: int) -> None:
        if self.interactive:
            from tqdm import tqdm

            columns, lines = _terminal_size()
            self.bar = tqdm(
                total=total_steps,
                unit="step",
                desc="training",
                leave=False,
                file=sys.stderr,
                ncols=columns,
                nrows=lines,
            )

    def steps(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def epoch(self, stats: Any) -> None:
        message = (
            f"epoch {stats.epoch}/{stats.epochs}: train loss {stats.train_loss:.4f}, "
            f"validation loss {stats.validation_loss:.4f}, "
            f"validation accuracy {stats.validation_accuracy:.4f} ({stats.seconds:.2f} s)"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(f"val loss {stats.validation_loss:.4f}", refresh=False)
            logger.debug(message)
        else:
            logger.info(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_train(args: argparse.Namespace) -> int:
    from training import pipeline

    started = time.perf_counter()
    _check_output_file(args.out)
    if args.data is not None and _same_file(args.data, args.out):
        raise _UsageError(
            f"--out {args.out} is the --data file: the artifact would replace the readings"
        )
    if args.data is not None and args.samples is not None:
        raise _UsageError(
            "--samples sets the size of synthetic data; it cannot be used with --data"
        )
    if args.data is None:
        for flag, value in (("--group-column", args.group_column), ("--units", args.units)):
            if value is not None:
                raise _UsageError(f"{flag} applies to --data only")
        if args.features != DEFAULT_FEATURES:
            raise _UsageError("--features applies to --data only")
    if args.validation_fraction <= 0 or args.test_fraction <= 0:
        raise _UsageError("--validation-fraction and --test-fraction must be above 0")
    if args.validation_fraction + args.test_fraction >= 1:
        raise _UsageError("--validation-fraction plus --test-fraction must be below 1")
    try:
        config = _fit_config(args)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    # Found now rather than after the training: where the artifact and the report will go.
    _make_directory(args.out.parent, args.out)
    if args.report is not None:
        _make_directory(args.report, args.report)
    rng = np.random.default_rng(args.seed)
    if args.data is None:
        n_samples = args.samples if args.samples is not None else DEFAULT_SAMPLES
        parts = pipeline.synthetic_parts(n_samples, rng, dict(args.limits))
        logger.info("synthetic data: %d training readings", n_samples)
    else:
        from training.data import check_classes, load_data

        data = load_data(
            args.data,
            features=args.features,
            label=args.label,
            group_column=args.group_column,
            drop_invalid=args.drop_invalid,
            units=args.units,
            limits=dict(args.limits),
        )
        check_classes(data, args.data, args.label)
        logger.info(
            "%s: %d rows, %d features, classes %s",
            args.data,
            len(data),
            len(data.features),
            ", ".join(data.classes),
        )
        parts = pipeline.split_parts(
            data, rng, args.validation_fraction, args.test_fraction, str(args.data), args.label
        )
    logger.info("split: %s", ", ".join(f"{k} {v}" for k, v in parts.sizes().items()))
    costs, min_recalls = _decision_settings(args, parts.train.classes)

    progress = _Progress(interactive=sys.stderr.isatty() and not args.quiet)
    try:
        result = pipeline.train(
            parts,
            config,
            rng,
            seed=args.seed,
            on_start=progress.start,
            on_steps=progress.steps,
            on_epoch=progress.epoch,
            novelty_rate=args.novelty_rate,
            costs=costs,
        )
    finally:
        progress.close()
    history = result.history
    logger.info(
        "trained %d epochs in %.2f s (best epoch %d%s); calibration temperature %.3f",
        history.epochs_run,
        history.seconds,
        history.best_epoch,
        ", stopped early" if history.stopped_early else "",
        result.classifier.temperature,
    )

    from training.evaluate import format_metrics

    metrics = result.metrics
    if args.json:
        _print_json(metrics | {"model_version": result.classifier.version})
    else:
        print(format_metrics(metrics, title="test metrics"))
    if args.min_accuracy is not None and metrics["accuracy"] < args.min_accuracy:
        print(
            f"quality gate: test accuracy {metrics['accuracy']:.4f} is below --min-accuracy "
            f"{args.min_accuracy}; {args.out} was not written",
            file=sys.stderr,
        )
        return EXIT_GATE
    for name, minimum in min_recalls.items():
        recall = metrics["per_class"][name]["recall"]
        if recall < minimum:
            print(
                f"quality gate: test recall of {name!r} {recall:.4f} is below --min-recall "
                f"{name}={minimum}; {args.out} was not written",
                file=sys.stderr,
            )
            return EXIT_GATE
    # Only for a model that passed its gates: a report beside the deployed model describes it.
    if args.report is not None:
        from training.report import write_training_report

        written = write_training_report(result, args.report)
        logger.info("report: %s", ", ".join(str(p) for p in written))
    _write(args.out, result.classifier.save)
    elapsed = time.perf_counter() - started
    print(
        f"wrote {args.out} (model_version {result.classifier.version}, "
        f"test accuracy {metrics['accuracy']:.4f}, {elapsed:.1f} s)",
        file=sys.stderr if args.json else sys.stdout,
    )
    return EXIT_OK


def _run_evaluate(args: argparse.Namespace) -> int:
    import model
    from training.data import load_data
    from training.evaluate import format_metrics
    from training.pipeline import evaluate_classifier

    try:
        classifier = model.load(args.model)
    except model.ArtifactError as exc:
        raise DataError(str(exc)) from None
    features = args.features if args.features is not None else classifier.features
    if len(features) != classifier.n_features:
        raise _UsageError(
            f"--features names {len(features)} columns but the model takes {classifier.n_features} "
            f"({', '.join(classifier.features)})"
        )
    data = load_data(
        args.data,
        features=features,
        label=args.label,
        group_column=args.group_column,
        drop_invalid=args.drop_invalid,
        classes=classifier.classes,
    )
    model_version = classifier.version
    if args.cost:
        classifier = _with_costs(classifier, args.cost)
    metrics = evaluate_classifier(classifier, data)
    if args.cost:
        # What `python -m training costs` with the same --cost would write.
        metrics["candidate_model_version"] = metrics["model_version"]
        metrics["model_version"] = model_version
    if args.json:
        _print_json(metrics)
    else:
        print(format_metrics(metrics, title=f"{args.model} on {args.data}"))
        print(
            f"  model_version {metrics['model_version']}; "
            f"{metrics['in_training_range']:.1%} of readings inside the training range, "
            f"{metrics['novel']:.2%} flagged novel"
        )
    return EXIT_OK


def _print_json(data: dict[str, Any]) -> None:
    """``data`` as one line of strict JSON: NaN or Infinity would not parse for most readers."""
    print(json.dumps(data, allow_nan=False))


def _decision_settings(
    args: argparse.Namespace, classes: tuple[str, ...]
) -> tuple[np.ndarray | None, dict[str, float]]:
    """The --cost matrix (None when no --cost) and the --min-recall settings for ``classes``."""
    from training.costs import cost_matrix, min_recalls

    try:
        costs = cost_matrix(args.cost, classes) if args.cost else None
        return costs, min_recalls(args.min_recall, classes)
    except CostError as exc:
        raise _UsageError(str(exc)) from None


def _with_costs(classifier: Any, specs: list[tuple[str, str, float]]) -> Any:
    """A copy of ``classifier`` whose cost matrix is made of ``specs`` (empty: default costs)."""
    import dataclasses

    from training.costs import cost_matrix

    try:
        costs = cost_matrix(specs, classifier.classes)
    except CostError as exc:
        raise _UsageError(str(exc)) from None
    return dataclasses.replace(classifier, costs=costs, metadata=dict(classifier.metadata))


def _run_costs(args: argparse.Namespace) -> int:
    import dataclasses
    import datetime as dt

    import model
    from training.costs import describe

    _check_output_file(args.out)
    try:
        original = model.load(args.model)
    except model.ArtifactError as exc:
        raise DataError(str(exc)) from None
    rewritten = _with_costs(original, args.cost)
    history = list(original.metadata.get("cost_changes", []))
    history.append(
        {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "from_model_version": original.version,
            "costs": describe(rewritten.costs, rewritten.classes),
        }
    )
    reference = rewritten.drift_reference
    if reference is not None and reference.probabilities is not None:
        # Live labels are compared with the labels these costs answer on validation readings.
        reference = reference.answered(rewritten.decide(reference.probabilities))
    elif reference is not None:
        logger.warning(
            "%s was written before its drift reference kept validation probabilities: its label"
            " shares stay those of the costs it was trained with (label drift would show the"
            " change of costs); retrain with --cost to refresh them",
            args.model,
        )
    # Metadata is not part of model_version; the matrix is.
    rewritten = dataclasses.replace(
        rewritten,
        metadata={**rewritten.metadata, "cost_changes": history},
        drift_reference=reference,
    )
    _write(args.out, rewritten.save)
    entries = ", ".join(describe(rewritten.costs, rewritten.classes)) or "none (argmax)"
    print(
        f"wrote {args.out} (model_version {rewritten.version}, was {original.version}); "
        f"costs other than 1: {entries}"
    )
    return EXIT_OK


def _run_generate(args: argparse.Namespace) -> int:
    from training.data import synthetic, write_csv

    _check_output_file(args.out)
    _make_directory(args.out.parent, args.out)
    data = synthetic(args.samples, np.random.default_rng(args.seed))
    _write(args.out, lambda path: write_csv(data, path))
    print(f"wrote {args.samples} synthetic readings to {args.out}")
    return EXIT_OK


COMMANDS = {
    "evaluate": (build_evaluate_parser, _run_evaluate),
    "generate": (build_generate_parser, _run_generate),
    "costs": (build_costs_parser, _run_costs),
}


def _make_directory(directory: Path, output: Path) -> None:
    """Create ``directory`` (and its parents) for ``output``; OSError naming ``output`` if it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OSError(f"cannot write {output}: {directory} is a file, not a directory") from None
    except OSError as exc:
        raise OSError(f"cannot write {output}: {exc.strerror or exc}") from None


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links too), when both exist; else one path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _check_output_file(out: Path) -> None:
    if out.is_dir():
        raise _UsageError(f"--out {out} is a directory; give a file path such as {DEFAULT_OUT}")


def _write(out: Path, write: Callable[[Path], None]) -> None:
    """Write ``out`` with ``write`` (atomic); a failure (a full disk, an I/O error) names the
    file and reassures."""
    try:
        write(out)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(
            f"cannot write {out}: {reason}; the file that was there is unchanged"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        build, run = COMMANDS[argv[0]]
        argv = argv[1:]
    else:
        build, run = build_train_parser, _run_train
    parser = build()
    args = parser.parse_args(argv)  # exits with status 2 on a usage error
    _configure_logging(args.quiet)
    try:
        return run(args)
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except (FloatingPointError, OSError) as exc:
        # A diverged run, or an output path that cannot be written (permissions, full disk).
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        # A --data larger than memory (or endless: a device, a pipe that never ends).
        print(
            "error: out of memory; nothing was written (use a smaller --data file or --samples)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Artifacts are written atomically, so whatever was at the output path is still there.
        print("interrupted; no artifact was written", file=sys.stderr)
        return EXIT_INTERRUPTED
