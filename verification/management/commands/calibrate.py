"""python manage.py calibrate [--target-far F] [--review-far F] [--apply --operator NAME] [--revert] [--json]

Measures FAR and FRR on the site's own ready references (``services/calibration.py``). Loads the face
model (its head scores the stored embeddings): run it where the worker runs, not in the web image.
"""
import getpass
import json

from django.core.management.base import BaseCommand, CommandError

from verification.errors import DomainError
from verification.services import calibration


def _rate(row: dict, name: str) -> str:
    low, high = row[f"{name}_ci95"]
    return f"{row[name]:.2e} [{low:.2e}, {high:.2e}]"


class Command(BaseCommand):
    help = (
        "Measure the site's false-accept and false-reject rates on its own ready references (every cross-person "
        "pair, every same-person pair; the model's decision rule for k references), at the thresholds in force and at the "
        "thresholds meeting a target FAR. --apply stores those as the site's thresholds for this model version."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001 - Django signature
        parser.add_argument("--target-far", type=float, default=None,
                            help="target false-accept rate (default: the model's target, else 1e-3)")
        parser.add_argument("--review-far", type=float, default=None,
                            help="target share of strangers reaching a guard or beyond, for the review band's lower "
                                 "edge (default: the band in force's, else 1e-2)")
        parser.add_argument("--apply", action="store_true", help="store the measured thresholds (audited)")
        parser.add_argument("--revert", action="store_true",
                            help="go back to the model's own thresholds for this model version (audited)")
        parser.add_argument("--operator", default="", help="name recorded in the audit log (default: the OS user)")
        parser.add_argument("--draws", type=int, default=3, help="seeded enrolment draws for k > 1 references")
        parser.add_argument("--resamples", type=int, default=200, help="people-bootstrap resamples for the CIs")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options) -> None:
        operator = options["operator"] or getpass.getuser()
        if options["revert"]:
            from verification import inference

            version = inference.model_info().version
            row = calibration.calibration_revert(model_version=version, operator=operator)
            self.stdout.write(f"model {version}: back to the model's thresholds (site calibration #{row.pk})")
            return
        target = options["target_far"]
        if target is not None and not 0.0 < target < 1.0:
            raise CommandError("--target-far must be between 0 and 1")
        review = options["review_far"]
        if review is not None and not 0.0 < review < 1.0:
            raise CommandError("--review-far must be between 0 and 1")
        try:
            report = calibration.calibration_measure(target_far=target, review_far=review, draws=options["draws"],
                                                     resamples=options["resamples"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self._print(report)
        for warning in report.warnings:
            self.stderr.write(warning)
        if options["apply"]:
            try:
                row = calibration.calibration_apply(report=report, operator=operator)
            except DomainError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"applied: site calibration #{row.pk}, thresholds {row.thresholds}, "
                              f"review thresholds {row.review_thresholds}")

    def _print(self, report: calibration.CalibrationReport) -> None:
        self.stdout.write(
            f"model {report.model_version}, thresholds in force from {report.threshold_source}; "
            f"{report.people} people, {report.references} ready references; target FAR {report.target_far:g}, "
            f"review band FAR {report.review_far:g}"
        )
        for k, row in report.per_references.items():
            if "skipped" in row:
                self.stdout.write(f"k={k}: skipped ({row['skipped']})")
                continue
            current, proposed = row["current"], row["proposed"]
            promised = "-" if row["promised_far"] is None else f"{row['promised_far']:.2e}"
            self.stdout.write(
                f"k={k}: {current['genuine_trials']} genuine / {current['impostor_trials']} impostor trials, "
                f"{row['enrolled_people']} people\n"
                f"  in force  t={current['threshold']:.4f}  FAR {_rate(current, 'far')}  FRR {_rate(current, 'frr')}"
                f"  (model promised FAR {promised})\n"
                f"  at target t={proposed['threshold']:.4f}  FAR {_rate(proposed, 'far')}  FRR {_rate(proposed, 'frr')}"
            )
            # The band's lower edge: FAR = strangers reaching a guard or beyond, FRR = genuine refused outright.
            for label, key in (("review in force", "review_current"), ("review at target", "review_proposed")):
                if key in row:
                    edge = row[key]
                    self.stdout.write(f"  {label} t={edge['threshold']:.4f}  FAR {_rate(edge, 'far')}  "
                                      f"FRR {_rate(edge, 'frr')}")
