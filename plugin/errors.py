"""Every error dxsafety raises, in one place.

Hierarchy::

    DxSafetyError
    ├── FhirError                    FHIR input or server problems
    │   ├── FhirParseError           a resource that is not JSON / not valid FHIR (skipped, counted)
    │   ├── Malformed                a field the timeline reads has the wrong type or value
    │   │   ├── Untimed              a resource with no date to place it at (both: the resource
    │   │   │                        is skipped and reported as a FhirParseError)
    │   │   └── OutOfRangeDate       a placeholder date (9999-12-31): read as unknown, warned
    │   ├── EmptySource              the source holds no FHIR resources at all
    │   ├── FatalFhirError           401/403/404, invalid JSON page, non-Bundle where one is due
    │   ├── TemporaryFhirError       429/5xx/connection errors (retried, then raised)
    │   ├── FhirDeadlineError        the overall deadline of a call passed (a TemporaryFhirError)
    │   ├── FhirAuthError            SMART token endpoint refused us (a FatalFhirError)
    │   └── IncompleteExport         a Bulk file shorter than its manifest count (FatalFhirError)
    ├── RuleError                    rule files
    │   ├── RuleValidationError      every problem in a rules tree: YAML syntax (R0xx), schema
    │   │                            (R1xx), references (R2xx), value sets (R3xx), file:line:col
    │   │   └── PairValidationError  SPADE pair files (rules/spade/*.yml), S0xx/S1xx, file:line:col
    │   ├── TimelineSpecError        an inline test timeline that cannot be built
    │   └── NotCompiled              a rule the population engine cannot express in SQL
    ├── NormalizeTableError          a normalisation table (plugin/normalize/tables) malformed
    ├── ModelError                   ranker models (missing file, feature version mismatch)
    ├── SettingsError                bad or unsafe settings (default secrets in production)
    ├── StageMismatch                a --stage directory this (incremental) scan cannot use
    ├── CdsError                     CDS Hooks service (plugin/cds), each mapped to an HTTP status
    │   ├── CdsAuthError             client JWT missing or invalid (401, no detail)
    │   ├── CdsRequestError          malformed hook or feedback request (400)
    │   ├── UnknownService           no CDS service with that id (404)
    │   ├── BodyTooLarge             request body over the limit (413, raised and caught inside
    │   │                            the BodyLimit middleware)
    │   ├── PrefetchUnavailable      data needed and not obtainable (412 + OperationOutcome)
    │   │   └── PrefetchTimeout      the call's one FHIR deadline passed (card, or 412)
    │   ├── UnsupportedMediaType     a POST whose Content-Type is not JSON (415)
    │   └── ReplayStoreUnavailable   the shared jti replay cache cannot be reached (503)
    ├── StoreError                   worklist database problems (incl. ConflictError)
    │   ├── ConflictError            optimistic-locking conflict on a review save
    │   ├── SamplingError            a review-sample request that cannot be honoured (issue 13)
    │   └── PasswordPolicyError      a password NIST SP 800-63B refuses (issue 15)
    ├── AccessError                  a worklist page refused
    │   ├── LoginRequired            no valid session (a GET redirects to the login page; 401)
    │   ├── Forbidden                signed in but not allowed, or a stale CSRF token (403)
    │   ├── BadRequest               malformed input such as a NUL character (400; issue 15)
    │   └── SignOnError              OpenID Connect sign-on failed (issue 15)
    └── TextLexiconError             the report-text lexicon or concept file is malformed

CLI-fatal conditions are raised as :class:`FatalError` (a ``SystemExit``) with a
stable exit code from :class:`ExitCode`; only ``plugin.cli.main_cli`` catches and
prints it. Library code never prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, NoReturn


class ExitCode(IntEnum):
    """Stable process exit codes. Never renumber; retire by commenting out."""

    OK = 0
    FINDINGS = 0  # findings are not an error
    USAGE = 2
    RULES_INVALID = 10
    RULE_TESTS_FAILED = 11
    INPUT_NOT_FOUND = 12
    INPUT_UNREADABLE = 13
    FHIR_FATAL = 20
    FHIR_TEMPORARY = 21
    FHIR_AUTH = 22
    MODEL_INVALID = 30
    SETTINGS_INVALID = 40
    STORE_FAILED = 50


class DxSafetyError(Exception):
    """Base of every dxsafety error."""


# --- FHIR -----------------------------------------------------------------------------------
class FhirError(DxSafetyError):
    pass


@dataclass
class FhirParseError(FhirError):
    """One unreadable resource. ``where`` is ``file:line`` (or a URL), ``what`` the reason."""

    where: str
    what: str
    resource_type: str | None = None
    resource_id: str | None = None

    def __str__(self) -> str:
        res = ""
        if self.resource_type:
            res = f" {self.resource_type}/{self.resource_id or '?'}"
        return f"{self.where}:{res} {self.what}"


class FatalFhirError(FhirError):
    def __init__(self, message: str, *, status: int | None = None, url: str | None = None):
        super().__init__(message)
        self.status = status
        self.url = url


class TemporaryFhirError(FhirError):
    def __init__(self, message: str, *, status: int | None = None, url: str | None = None):
        super().__init__(message)
        self.status = status
        self.url = url


class FhirDeadlineError(TemporaryFhirError):
    pass


class FhirAuthError(FatalFhirError):
    pass


class Malformed(FhirError):
    """A field the timeline reads has the wrong type or an unparseable value
    (``plugin.fhir.values``); the resource is skipped and reported as a FhirParseError."""


class Untimed(Malformed):
    """The resource has no date the timeline can place it at."""


# --- Rules ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceLocation:
    """1-indexed position in a file."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class RuleProblem:
    """One problem in a rule file: ``path:line:col: error[CODE] message``. A ``warning``
    (``rules lint`` only: a likely mistake, e.g. ``codes:`` naming diagnoses) never stops a load."""

    location: SourceLocation
    code: str  # stable code, e.g. R101 unknown key
    message: str
    context: str = ""  # the offending source line(s)
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        text = f"{self.location}: {self.severity}[{self.code}] {self.message}"
        if self.context:
            text += "\n" + self.context
        return text


class RuleError(DxSafetyError):
    pass


class RuleValidationError(RuleError):
    def __init__(self, problems: list[RuleProblem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class TimelineSpecError(RuleError, ValueError):
    """An inline test timeline (rule test case ``events``) that cannot be built."""


# --- Other families -------------------------------------------------------------------------
class ModelError(DxSafetyError):
    pass


class SettingsError(DxSafetyError):
    pass


class StoreError(DxSafetyError):
    pass


class ConflictError(StoreError):
    """Someone else saved the same record since it was read (optimistic locking)."""


class AccessError(DxSafetyError):
    """A worklist page refused (answered by the handlers ``plugin.worklist.web`` installs)."""


class LoginRequired(AccessError):
    """There is no valid session: a GET redirects to the login page, anything else gets 401."""


class Forbidden(AccessError):
    """Signed in but not allowed (a role, a stale CSRF token): 403 with ``message`` shown."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CdsError(DxSafetyError):
    pass


class CdsAuthError(CdsError):
    """The caller's JWT is missing or invalid. The reason is for our logs only, never the reply."""


class CdsRequestError(CdsError):
    pass


class UnknownService(CdsError):
    """No CDS service has this id (404); the message is the id asked for."""


class BodyTooLarge(CdsError):
    """A request body grew past the limit while being read (413). The BodyLimit middleware
    raises and catches it around the app, so no exception handler inside the app may catch
    CdsError as a whole."""


class PrefetchUnavailable(CdsError):
    """Data the service needs is neither prefetched nor fetchable (HTTP 412)."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        client_issues: list[dict[str, object]] | None = None,
    ):
        super().__init__(message)
        self.key = key
        self.client_issues = client_issues or []


class FatalError(SystemExit):
    """Stop the CLI with a message and a stable exit code; caught only in ``main_cli``."""

    def __init__(self, message: str, code: ExitCode):
        super().__init__(int(code))
        self.message = message
        self.exit_code = code


def fatal(message: str, code: ExitCode) -> NoReturn:
    raise FatalError(message, code)


# --- issue 11 (engineer A): bad input never crashes, never silently loses -------------------
class OutOfRangeDate(Malformed):
    """A date outside the years a chart can mean (``9999-12-31`` "no end" and ``0001-01-01``
    placeholders); ``plugin.fhir.values.when`` reads it as unknown and reports a warning."""


class EmptySource(FhirError):
    """The source holds no FHIR resources at all: no input files, or none readable. A scan of
    nothing is an error, not "0 patients, 0 findings"."""


class IncompleteExport(FatalFhirError):
    """A Bulk export file holds fewer resources than the manifest's ``count`` (a truncated
    download): the fetch failed, unless the caller allows a partial export."""


# --- issues 16 and 13 (engineer H): SPADE pairs, review-loop sampling ------------------------
class PairValidationError(RuleValidationError):
    """Every problem in the SPADE pair files (``rules/spade/*.yml``) as ``file:line:col``
    (S0xx syntax/files, S1xx schema and consistency); printed like rule problems."""


class SamplingError(StoreError):
    """A worklist sampling request that cannot be honoured (no such rule, a size or fraction
    out of range)."""


# --- issue 14 (engineer G): CDS Hooks service safe by default ------------------------------
class PrefetchTimeout(PrefetchUnavailable):
    """The hook call's one FHIR deadline passed before the data could be read (a card says
    so, or 412 when ``settings.cds_timeout_card`` is off)."""


class UnsupportedMediaType(CdsError):
    """A hook or feedback POST whose Content-Type is not JSON (415 + OperationOutcome)."""


class ReplayStoreUnavailable(CdsError):
    """The shared jti replay cache (worklist database) cannot be reached: the call is refused
    (503), never let through unchecked."""


# --- issue 11 (engineer B): normalisation tables -------------------------------------------
class NormalizeTableError(DxSafetyError):
    """A normalisation table (plugin/normalize/tables) is missing, malformed or a row lacks its
    source; the message gives ``file:line``."""


# --- issue 11 (engineer C): report text, data profile --------------------------------------
class TextLexiconError(DxSafetyError):
    """The report-text lexicon or concept file (plugin/text/*.yaml) is malformed: a term that
    is not a valid expression, a row without its direction or source."""


# --- issue 15 (engineer F): worklist review integrity, sign-on ----------------------------
class BadRequest(AccessError):
    """A request the worklist refuses as malformed (a NUL character, say): 400 with
    ``message`` shown, instead of the database failing on it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PasswordPolicyError(StoreError):
    """A password the NIST SP 800-63B policy refuses (too short, common or breached)."""


class SignOnError(AccessError):
    """OpenID Connect sign-on failed (provider unreachable, bad state, token invalid)."""


# --- issue 12 (engineer D): population engines -------------------------------------------
class NotCompiled(RuleError):
    """A rule uses something the SQL engines cannot evaluate; the population scan runs it
    through the Python engine instead (plugin/population/compile.py)."""


# --- issue 12 item 5 (engineer I): incremental population scans ----------------------------
class StageMismatch(DxSafetyError):
    """A ``--stage`` directory cannot take this scan (staged without ``--incremental``, by
    another version, or restaged since); the message says which and what to run."""
