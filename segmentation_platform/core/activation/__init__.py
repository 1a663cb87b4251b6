"""Activation: holdouts, audience selection, consent audit and exports to files and webhooks.

The names below are the public surface (what notebooks, defs and tests import); the private
modules behind them may change.
"""

from segmentation_platform.core.activation._audience import load_activation_frame, select_audience
from segmentation_platform.core.activation._audit import audit_run, read_export_rows
from segmentation_platform.core.activation._common import (
    APPROVED_USAGE_FIELD,
    ASSIGNMENTS_TABLE,
    EXPORTS_TABLE,
    HOLDOUTS_TABLE,
    MANIFEST_NAME,
    ActivationError,
    WebhookDeliveryError,
)
from segmentation_platform.core.activation._config import (
    CONFIG_PATH,
    ActivationConfig,
    Experiment,
    WebhookSettings,
    load_activation_config,
)
from segmentation_platform.core.activation._exports import (
    ExportResult,
    export_destination,
    export_log_frame,
    redact_pii,
    run_exports,
)
from segmentation_platform.core.activation._files import read_manifest, write_atomically
from segmentation_platform.core.activation._holdouts import (
    assign_holdouts,
    compute_holdouts,
    holdout_bucket,
    holdout_share_deviations,
    write_holdouts,
)
from segmentation_platform.core.activation._suppression import SuppressionList, load_suppression_list
from segmentation_platform.core.activation._tables import EXPORTS_SCHEMA, HOLDOUTS_SCHEMA, TABLE_SCHEMAS
from segmentation_platform.core.activation._webhook import deliver_webhook, webhook_batches

__all__ = [
    "APPROVED_USAGE_FIELD",
    "ASSIGNMENTS_TABLE",
    "ActivationConfig",
    "ActivationError",
    "CONFIG_PATH",
    "EXPORTS_SCHEMA",
    "EXPORTS_TABLE",
    "Experiment",
    "ExportResult",
    "HOLDOUTS_SCHEMA",
    "HOLDOUTS_TABLE",
    "MANIFEST_NAME",
    "SuppressionList",
    "TABLE_SCHEMAS",
    "WebhookDeliveryError",
    "WebhookSettings",
    "assign_holdouts",
    "audit_run",
    "compute_holdouts",
    "deliver_webhook",
    "export_destination",
    "export_log_frame",
    "holdout_bucket",
    "holdout_share_deviations",
    "load_activation_config",
    "load_activation_frame",
    "load_suppression_list",
    "read_export_rows",
    "read_manifest",
    "redact_pii",
    "run_exports",
    "select_audience",
    "webhook_batches",
    "write_atomically",
    "write_holdouts",
]
