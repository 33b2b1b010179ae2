"""dxsafety: diagnostic-safety e-triggers, missed-diagnosis ranking and CDS Hooks on FHIR R4."""

__version__ = "0.1.0"
