"""The ``radview`` command line.

Commands print one line per problem (naming the file) and exit with 0 when something useful was
done, 2 when the input could not be used at all. They never print a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from radview import __version__
from radview.core.errors import RadviewError

__all__ = ["main"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):  # plain `radview`: the study browser
        args = parser.parse_args(["view"])
    try:
        return args.handler(args)
    except RadviewError as error:
        print(f"radview: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # unwritable output folder, full disk: one line, no traceback
        where = f"{error.filename}: " if error.filename else ""
        print(f"radview: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("radview: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radview", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"radview {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    info = commands.add_parser("info", help="list the series in a file or folder")
    info.add_argument("path", type=Path, help="a DICOM/NIfTI/NRRD/MHA file or a folder")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--load", action="store_true",
                      help="also decode the voxels; report load_seconds and peak_rss_mb")
    info.set_defaults(handler=_cmd_info)

    view = commands.add_parser("view", help="open the viewer (on PATH if given)")
    view.add_argument("path", type=Path, nargs="?", help="a DICOM/NIfTI file or a folder")
    view.add_argument("--labels", type=Path, help="a label map (NIfTI/NRRD/MHA) to overlay")
    view.add_argument("--layout", choices=["1x1", "1x3", "2x2"], help="view layout")
    view.add_argument("--screenshot", type=Path, metavar="FILE.png",
                      help="save a PNG of the window once the series is shown, then exit")
    view.set_defaults(handler=_cmd_view)

    report = commands.add_parser(
        "report", help="measure a label map on a series; write the PDF report, DICOM SEG/SR/"
        "PDF, NIfTI, JSON and CSV")
    report.add_argument("path", type=Path, help="the image: a DICOM folder/file or a volume file")
    report.add_argument("--labels", type=Path, required=True,
                        help="label map on the image (1 = liver, 2 = tumour)")
    report.add_argument("--out", type=Path, required=True, help="output folder")
    report.add_argument("--clinical", type=Path, help="clinical values (JSON) for the scores")
    report.add_argument("--deidentify", action="store_true",
                        help="de-identify every output (PS3.15 basic profile)")
    report.add_argument("--institution", help="institution name printed on the report")
    report.set_defaults(handler=_cmd_report)

    sample = commands.add_parser("sample", help="write the embedded synthetic sample study")
    sample.add_argument("--out", type=Path, required=True, help="output folder")
    sample.add_argument("--matrix", type=int, default=512, help="rows and columns (default 512)")
    sample.add_argument("--slices", type=int, default=80, help="number of slices (default 80)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.add_argument("--if-missing", action="store_true",
                        help="do nothing when the folder already holds a sample study")
    sample.set_defaults(handler=_cmd_sample)

    analyze = commands.add_parser(
        "analyze", help="segment liver and tumours with the installed model, measure, and "
        "write measurements.json + labels.nii.gz (and the report with --report)")
    analyze.add_argument("path", type=Path, help="the image: a DICOM folder/file or a volume file")
    analyze.add_argument("--series", metavar="UID", help="the series to analyse (default: the "
                         "one with the most slices; `radview info` lists them)")
    analyze.add_argument("--out", type=Path, required=True,
                         help="output folder (required; never the input folder: nothing is "
                         "written next to the scans)")
    analyze.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                         help="where the model runs (default auto: the GPU when available)")
    analyze.add_argument("--models", metavar="ID,...",
                         help="only use these model ids (comma-separated)")
    analyze.add_argument("--clinical", type=Path, metavar="FILE.json",
                         help="clinical values (JSON) for the clinical scores")
    analyze.add_argument("--report", action="store_true",
                         help="also write the PDF report and DICOM SEG/SR/PDF")
    analyze.add_argument("--deidentify", action="store_true",
                         help="de-identify every output (PS3.15 basic profile)")
    analyze.add_argument("--force", action="store_true",
                         help="run even if the series' modality is not the model's")
    analyze.set_defaults(handler=_cmd_analyze)

    models = commands.add_parser("models", help="list the installed models (and unusable ones)")
    models.add_argument("--json", action="store_true", help="print JSON instead of text")
    models.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="device whose execution provider is shown (default auto)")
    models.set_defaults(handler=_cmd_models)
    return parser


# ---------------------------------------------------------------------------- info
def _cmd_info(args: argparse.Namespace) -> int:
    from radview.io.dicom_load import load_stack
    from radview.io.discover import discover
    from radview.io.volume_files import read_volume_file

    if not args.path.exists():
        print(f"radview: {args.path}: does not exist", file=sys.stderr)
        return EXIT_BAD_INPUT
    found = discover([args.path])
    problems = list(found.problems)
    series: list[dict] = []
    for stack in found.stacks:
        entry = _stack_entry(stack)
        if args.load:
            started = time.perf_counter()
            try:
                loaded = load_stack(stack)
            except RadviewError as error:
                problems.append(_problem(getattr(error, "path", stack.first_instance.path),
                                         getattr(error, "reason", str(error))))
                continue
            problems.extend(loaded.problems)
            entry.update(_loaded_entry(loaded.volume, time.perf_counter() - started))
            entry["warnings"] = list(loaded.volume.warnings)
        series.append(entry)
    for path in found.volume_files:
        started = time.perf_counter()
        try:
            volume = read_volume_file(path)
        except RadviewError as error:
            problems.append(_problem(path, getattr(error, "reason", str(error))))
            continue
        entry = _volume_entry(volume)
        if args.load:
            entry.update(_loaded_entry(volume, time.perf_counter() - started))
        series.append(entry)

    errors = [_error_entry(p) for p in problems]
    if args.json:
        print(json.dumps({"series": series, "errors": errors}, indent=2))
    else:
        _print_info_text(series, errors)
    return EXIT_OK if series else EXIT_BAD_INPUT


def _stack_entry(stack) -> dict:
    rows, columns, slices = stack.rows, stack.columns, len(stack.slots)
    return {
        "kind": "dicom",
        "study_uid": stack.study_uid,
        "series_uid": stack.series_uid,
        "stack": stack.part,
        "series_number": stack.series_number,
        "modality": stack.modality,
        "description": stack.description,
        "slice_count": slices,
        "instance_count": len(stack.instances),
        "matrix": [columns, rows, slices],
        "spacing": [round(v, 6) for v in stack.spacing],
        "origin": [round(v, 4) for v in stack.origin],
        "direction": [[round(v, 6) for v in row] for row in stack.direction],
        "orientation": stack.orientation_label,
        "geometry_known": stack.geometry_known,
        "transfer_syntaxes": sorted({h.transfer_syntax_uid for h in stack.instances}),
        "warnings": list(stack.warnings),
    }


def _volume_entry(volume) -> dict:
    columns, rows, slices = volume.size_xyz
    return {
        "kind": volume.source.kind,
        "file": volume.source.paths[0],
        "study_uid": "",
        "series_uid": "",
        "stack": "",
        "series_number": None,
        "modality": volume.modality,
        "description": volume.source.description,
        "slice_count": slices,
        "instance_count": 1,
        "matrix": [columns, rows, slices],
        "spacing": [round(v, 6) for v in volume.spacing],
        "origin": [round(v, 4) for v in volume.origin],
        "direction": [[round(float(v), 6) for v in row] for row in volume.direction],
        "orientation": "",
        "geometry_known": volume.geometry_known,
        "warnings": list(volume.warnings),
    }


def _loaded_entry(volume, seconds: float) -> dict:
    voxels = volume.voxels
    return {
        "load_seconds": round(seconds, 4),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "dtype": str(voxels.dtype),
        "value_range": [float(np.min(voxels)), float(np.max(voxels))] if voxels.size else [],
        "unit": volume.rescale.unit,
    }


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux; it is the process' lifetime peak, which is what a user of
    # a one-shot command cares about.
    import resource  # Unix only; imported here so the rest of the CLI works everywhere

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _problem(path, reason: str):
    from radview.io.dicom_header import FileProblem

    return FileProblem(str(path), reason)


def _error_entry(problem) -> dict:
    return {"file": problem.path, "reason": problem.reason, "kind": problem.kind}


def _print_info_text(series: list[dict], errors: list[dict]) -> None:
    for entry in series:
        columns, rows, slices = entry["matrix"]
        sx, sy, sz = entry["spacing"]
        title = entry["description"] or entry.get("file", "") or "(no description)"
        if entry["stack"]:
            title += f" [{entry['stack']}]"
        print(f"{entry['modality'] or '--':4} {title}")
        print(f"     {columns}x{rows}x{slices} voxels, {sx:g} x {sy:g} x {sz:g} mm, "
              f"{entry['orientation'] or 'volume file'}; {entry['instance_count']} file(s)")
        if entry["series_uid"]:
            print(f"     series {entry['series_uid']}")
        if "load_seconds" in entry:
            print(f"     loaded in {entry['load_seconds']:.3f} s, {entry['dtype']}, "
                  f"peak RSS {entry['peak_rss_mb']:.0f} MB")
        for warning in entry["warnings"]:
            print(f"     warning: {warning}")
    if errors:
        print(f"{len(errors)} file(s) not used:")
        for error in errors:
            print(f"  {error['file']}: {error['reason']}")
    if not series:
        print("nothing could be loaded", file=sys.stderr)


# ---------------------------------------------------------------------------- view
def _cmd_view(args: argparse.Namespace) -> int:
    import os

    from radview.app import offscreen_if_headless, run_gui

    for path in (args.path, args.labels):
        if path is not None and not path.exists():
            print(f"radview: {path}: does not exist", file=sys.stderr)
            return EXIT_BAD_INPUT
    if args.screenshot is not None:
        offscreen_if_headless()
    elif sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
    ):
        print("radview: no display to open a window on (use --screenshot FILE.png, or set "
              "QT_QPA_PLATFORM=offscreen)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_gui(args.path, labels=args.labels, layout=args.layout,
                   screenshot=args.screenshot)


# ---------------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    from radview.io.open_study import load_label_map, open_images
    from radview.io.study_index import default_index_path
    from radview.report.export_study import deidentification_secret, export_report

    for path in (args.path, args.labels, args.clinical):
        if path is not None and not path.exists():
            print(f"radview: {path}: does not exist", file=sys.stderr)
            return EXIT_BAD_INPUT
    opened = open_images([args.path])
    for problem in opened.problems:
        print(f"  not used: {problem.path}: {problem.reason}", file=sys.stderr)
    labels = load_label_map(args.labels, opened.volume)
    clinical = None
    if args.clinical is not None:
        from radview.inference.clinical import load_clinical_json

        clinical = load_clinical_json(args.clinical)
    secret = deidentification_secret(default_index_path().parent) if args.deidentify else None
    result = export_report(opened.volume, labels, args.out, clinical_values=clinical,
                           deidentify_with=secret, institution=args.institution)
    print(f"{result.lesion_count} lesion(s) measured; "
          f"{'de-identified ' if result.deidentified else ''}outputs in {args.out}:")
    for name in result.files.values():
        print(f"  {name.name}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return EXIT_OK


# ---------------------------------------------------------------------------- analyze
def _cmd_analyze(args: argparse.Namespace) -> int:
    from radview.inference.analyze import AnalysisWriters, analyze_study, write_analysis
    from radview.io.study_index import default_index_path
    from radview.report.deidentify import Deidentifier
    from radview.report.export_study import deidentification_secret, export_report
    from radview.report.tables import write_findings_json, write_labels_nifti

    for path in (args.path, args.clinical):
        if path is not None and not path.exists():
            print(f"radview: {path}: does not exist", file=sys.stderr)
            return EXIT_BAD_INPUT
    source = args.path.resolve()
    source_folder = source if source.is_dir() else source.parent
    out = args.out.resolve()
    if out == source_folder or source_folder in out.parents:
        print(f"radview: {args.out}: is inside the input folder {source_folder}; choose an "
              "output folder elsewhere (nothing is written next to the scans)", file=sys.stderr)
        return EXIT_BAD_INPUT
    clinical = None
    if args.clinical is not None:
        from radview.inference.clinical import load_clinical_json

        clinical = load_clinical_json(args.clinical)
    wanted = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = analyze_study([args.path], series_uid=args.series, models=wanted,
                           device=args.device, clinical_values=clinical, force=args.force)
    for path, reason in result.problems:
        print(f"  not used: {path}: {reason}", file=sys.stderr)
    secret = deidentification_secret(default_index_path().parent) if args.deidentify else None
    writers = AnalysisWriters(write_findings_json, write_labels_nifti, export_report,
                              lambda key, uid: Deidentifier(key).uid(uid))
    written = write_analysis(result, args.out, writers=writers, report=args.report,
                             deidentify_with=secret)
    seg = result.segmentation
    manifest = result.model.manifest
    print(f"model {manifest.id} {manifest.version} on {seg.provider}: {seg.seconds:.1f} s "
          f"(analysis {result.seconds:.1f} s)")
    if result.findings is None:
        print("no liver found")
    else:
        findings = result.findings
        print(f"liver volume {findings.liver_volume.value:.1f} mL; "
              f"{len(findings.lesions)} lesion(s); tumour burden "
              f"{findings.tumour_burden.value:.1f} %")
        for lesion in findings.lesions:
            print(f"  lesion {lesion.id}: {lesion.long_axis.value:.1f} x "
                  f"{lesion.short_axis.value:.1f} mm, {lesion.volume.value:.2f} mL")
        if manifest.lesion_filter is not None and seg.set_aside is not None:
            print(f"  lesion filter: {len(seg.set_aside)} candidate region(s) below "
                  f"{manifest.lesion_filter.threshold:.0%} lesion probability set aside "
                  "(labelled liver)")
            for candidate in seg.set_aside:
                print(f"    set aside: slice index {candidate.slice_index}, "
                      f"{candidate.volume_ml:.2f} mL, P(lesion) "
                      f"{candidate.lesion_probability:.0%}")
    if result.staging is not None:
        ranked = ", ".join(f"{name} {p:.0%}" for name, p in result.staging.probabilities.items())
        print(f"liver disease stage (model {result.staging.model_id}, decision support): "
              f"{ranked}")
    else:
        print(f"staging: {result.notes.get('staging', 'not run')}")
    if result.triage is not None:
        probabilities = result.triage.probabilities
        flagged = int((probabilities >= 0.5).sum())
        print(f"slice triage (model {result.triage.model_id}): {flagged} of {len(probabilities)} "
              f"slice(s) with P(tumour) >= 0.5; highest {probabilities.max():.2f} at slice "
              f"index {int(probabilities.argmax())}")
    else:
        print(f"triage: {result.notes.get('triage', 'not run')}")
    print(f"{'de-identified ' if secret is not None else ''}outputs in {args.out}: "
          + ", ".join(sorted(p.name for p in written.files.values())))
    for warning in dict.fromkeys([*result.warnings, *written.warnings]):
        print(f"  warning: {warning}")
    return EXIT_OK


# ---------------------------------------------------------------------------- sample
def _cmd_sample(args: argparse.Namespace) -> int:
    from radview.io.sample_study import write_sample_study

    if args.matrix < 32 or args.matrix > 1024:
        print("radview: --matrix must be between 32 and 1024", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.slices < 8 or args.slices > 1000:
        print("radview: --slices must be between 8 and 1000", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.if_missing and (args.out / "truth" / "lesions.json").exists():
        print(f"sample study already in {args.out}")
        return EXIT_OK
    started = time.perf_counter()
    written = write_sample_study(args.out, matrix=args.matrix, slices=args.slices, seed=args.seed)
    print(f"sample study written to {args.out} in {time.perf_counter() - started:.1f} s")
    print(f"  DICOM series: {written.dicom_dir}")
    print(f"  truth: {written.labels_nifti}, {written.lesions_json}")
    return EXIT_OK


# ---------------------------------------------------------------------------- models
def _cmd_models(args: argparse.Namespace) -> int:
    # Listing is informational: unusable models are reported, not an error (exit 0); only a
    # failure to list at all (onnxruntime missing) exits 2 through main().
    from radview.inference.registry import (
        ENTRY_POINT_GROUP,
        default_builtin_dir,
        default_user_dir,
        discover_models,
    )
    from radview.inference.runtime import choose_providers, provider_status

    found = discover_models()
    choice = choose_providers(args.device)
    models = [{
        "id": model.id,
        "version": model.manifest.version,
        "task": model.manifest.task.value,
        "modality": model.manifest.modality,
        "source": model.source.value,
        "origin": model.origin,
        "sha256_prefix": model.manifest.sha256[:12],
        "provider": choice.primary,
        "folder": str(model.folder),
        "file": model.manifest.file,
        "labels": {str(value): name for value, name in model.manifest.labels.items()},
        "notes": list(model.notes),
    } for model in found.valid]
    invalid = [{"path": bad.path, "reason": bad.reason, "source": bad.source.value,
                "id": bad.model_id} for bad in found.invalid]
    if args.json:
        print(json.dumps({
            "models": models,
            "invalid": invalid,
            "notes": list(found.notes),
            "execution": {"device": choice.device, "providers": list(choice.providers),
                          "reason": choice.reason},
            "providers": [{"name": s.name, "available": s.available, "hint": s.hint}
                          for s in provider_status()],
            "search": {"builtin": str(default_builtin_dir()), "user": str(default_user_dir()),
                       "entry_point_group": ENTRY_POINT_GROUP},
        }, indent=2))
        return EXIT_OK
    print(f"execution provider: {choice.primary} ({choice.reason})")
    if not models:
        print(f"no usable models (searched {default_builtin_dir()}, {default_user_dir()} and "
              f"entry points '{ENTRY_POINT_GROUP}')")
    for entry in models:
        print(f"{entry['id']} {entry['version']}  {entry['task']}  {entry['modality']}  "
              f"{entry['source']}  sha256 {entry['sha256_prefix']}  {entry['provider']}")
        print(f"     {entry['origin']}")
        for note in entry["notes"]:
            print(f"     note: {note}")
    if invalid:
        print(f"{len(invalid)} model(s) not usable:")
        for bad in invalid:
            print(f"  {bad['path']}: {bad['reason']}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
