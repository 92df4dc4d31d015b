"""Every error the pack raises on purpose, in one hierarchy.

`PermanentError` and everything below it fails an Airflow task at once: retrying cannot fix
it (the operator base decides that in one place, by type). Any other exception (a server down,
a timeout) retries as the task is configured. Bad input from outside (a spec, a suite, a data
file, a model file, a registry version) is a `BadInput`; each message names the file, field or
version and what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path


class AirmlopsError(Exception):
    """The base of the pack's own errors."""


class PermanentError(AirmlopsError):
    """Retrying cannot fix it: the task fails at once."""


class BadInput(PermanentError, ValueError):
    """Input from outside is invalid; the message names the problem and the place."""


class FileSchemaError(BadInput):
    """A reviewed YAML file is invalid; the message names the file, each field and its problem."""

    what = "file"

    def __init__(self, path: str | Path, problems: list[tuple[str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: invalid {self.what}"]
        lines += [f"  - {field}: {msg}" for field, msg in problems]
        super().__init__("\n".join(lines))


class SpecError(FileSchemaError):
    """A model spec is invalid."""

    what = "model spec"


class SuiteError(FileSchemaError):
    """An expectation suite file is invalid."""

    what = "expectation suite"


class EstimatorError(BadInput):
    """The spec's estimator cannot be imported, built or does not fit the task."""


class DataError(BadInput):
    """Data is missing, unreadable or not what was expected. The message names the URI."""


class ScoringError(DataError):
    """A partition cannot be scored: unreadable, empty, or not what the model's signature needs.

    The message names the file and, where there is one, the column. `column` is set when one
    column's type or content is the cause (missing, wrong dtype, a value that does not parse).
    """

    def __init__(self, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class NoPartitions(DataError):
    """The input location holds no partition to score (nothing has landed yet)."""


class DataCheckFailed(BadInput):
    """A batch failed its expectation suite; it was quarantined and must not be used."""


class PartitionsQuarantined(BadInput):
    """Some partitions failed their checks: kept aside, not scored; the others were scored."""


class SinkError(BadInput):
    """The sink cannot take the run's rows: unsupported database or an incompatible table."""


class GateError(BadInput):
    """The gate cannot run: no challenger, or its holdout is missing or changed."""


class ProfileError(BadInput):
    """A reference profile cannot be built or read; the message names the column or member."""


class OnboardError(BadInput):
    """The model or its reference data cannot be onboarded; the message names which and why.

    Nothing was registered.
    """


class UnsafeModel(BadInput):
    """Loading the model would run code from it (a pickle, a type outside the allow-list,
    custom code): refused before anything is deserialized. The message names the model or
    version and why (airmlops_core.tracking.model_safety)."""


class DeployRefused(BadInput):
    """A deploy to another environment is refused before anything is registered in the target:
    the source version did not pass its gate, has no digest, or its files changed on the way.
    The message names the version, the registry and why (airmlops_core.deploy)."""


class ChampionNotFound(BadInput, LookupError):
    """The model has no version behind the alias yet (first run before any promotion)."""


class NoReference(BadInput, LookupError):
    """The champion's training run has no reference profile (trained before monitoring)."""


class CredentialError(BadInput):
    """A secret the pack needs is missing, unreadable or too weak.

    The message names the environment variable or file, never the value.
    """


class PromotionConflict(PermanentError):
    """The champion moved since the gate compared against it: re-evaluate, never overwrite."""


class ModelLoadError(AirmlopsError, RuntimeError):
    """The model version cannot be downloaded or loaded (may be passing: retried)."""


class LeaseError(AirmlopsError):
    """A registry lease (tracking.locks) could not be taken or was lost: retried."""


class LeaseBusy(LeaseError, TimeoutError):
    """Another writer held the lease for longer than this one waits (it is live, not stale)."""


class LeaseLost(LeaseError):
    """The lease ran past its safe window or was broken before the work's last write."""
