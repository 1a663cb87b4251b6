"""Table and file names, and the errors, every activation module shares."""

import re

from segmentation_platform.core.activation._config import (
    PLAYBOOK_PREFIX,
)
from segmentation_platform.core.warehouse import tables

ASSIGNMENTS_TABLE = tables.SEGMENT_ASSIGNMENTS
PROFILES_TABLE = tables.SEGMENT_PROFILES
CUSTOMERS_TABLE = tables.CUSTOMERS
HOLDOUTS_TABLE = tables.HOLDOUTS
EXPORTS_TABLE = tables.EXPORTS
MANIFEST_NAME = "manifest.json"
APPROVED_USAGE_FIELD = PLAYBOOK_PREFIX + "approved_usage"


# Where each catalog field comes from, first table that has the column wins.
_FIELD_SOURCES = (
    ("a", ASSIGNMENTS_TABLE),
    ("clv", tables.CLV_SCORES),
    ("churn", tables.CHURN_SCORES),
    ("rfm", tables.RFM_SCORES),
)
_IDENTITY_FIELDS = ("email", "phone", "first_name", "last_name", "email_consent", "sms_consent")
_UNSUBSCRIBE_COLUMNS = ("unsubscribed", "email_unsubscribed")
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ActivationError(RuntimeError):
    """An export could not be made; the previous export of the destination is untouched."""


class WebhookDeliveryError(ActivationError):
    """The endpoint kept failing: the export was not marked done and stays to be re-sent."""
