"""Every warehouse table name, in one place. Code never spells `schema.table` as a literal:
it imports the constant (or the domain's `TableSchema`, whose `.table` is one of these)."""

# identity (cumulative, unpartitioned)
IDENTITY_RECORDS = "identity.records"
IDENTITY_LINKS = "identity.links"
IDENTITY_IDENTIFIERS = "identity.identifiers"
CUSTOMER_KEY_MAP = "identity.customer_key_map"
IDENTITY_CHANGELOG = "identity.changelog"
CUSTOMERS = "identity.customers"
IDENTITY_REVIEW_FLAGS = "identity.review_flags"
IDENTITY_MODEL = "identity.model"
IDENTITY_MATCH_WEIGHTS = "identity.match_weights"

# weekly snapshots
CUSTOMER_FEATURES = "features.customer_features"
RFM_SCORES = "models.rfm_scores"
CLV_SCORES = "models.clv_scores"
CLV_VALIDATION = "models.clv_validation"
CHURN_SCORES = "models.churn_scores"
CHURN_DRIVERS = "models.churn_drivers"
BEHAVIOUR_CLUSTERS = "models.behaviour_clusters"
BEHAVIOUR_CLUSTER_PROFILES = "models.behaviour_cluster_profiles"
MODEL_REGISTRY = "models.registry"
SEGMENT_ASSIGNMENTS = "segments.assignments"
SEGMENT_PROFILES = "segments.profiles"
SEGMENT_CHANGELOG = "segments.changelog"
HOLDOUTS = "activation.holdouts"
EXPORTS = "activation.exports"
SEGMENT_KPIS = "measurement.segment_kpis"
CHANNEL_KPIS = "measurement.channel_kpis"
MIGRATION = "measurement.migration"
LIFT = "measurement.lift"


def raw_table(source: str) -> str:
    """Accepted landing rows of one source (daily partitions)."""
    return f"raw.{source}"


def quarantine_table(source: str) -> str:
    """Rejected landing rows of one source, with the reason (daily partitions)."""
    return f"quarantine.{source}"
