"""Probabilistic record linkage with Splink 5 (Fellegi-Sunter) on the warehouse connection.

The model compares people on what a household does *not* share: first name (with a
nickname level), birth date, email mailbox name and phone weigh against address,
postcode and surname, which a household does share. u-probabilities come from random
sampling, m-probabilities from several EM passes with different blocking rules (each
pass learns the comparisons its rule does not block on), and common surnames or busy
postcodes count for less through term-frequency adjustments.

The trained model is an artefact: its settings JSON (parameters rounded so re-training
on unchanged data reproduces it byte for byte) and a version hash of that JSON. Prediction
always runs from that JSON, so stored model and links can never disagree.
"""

import contextlib
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import duckdb

from segmentation_platform.core.config._paths import CONFIG_DIR
from segmentation_platform.core.identity._config import IdentityConfig

SPLINK_INPUT_COLUMNS = (
    "first_name",
    "first_name_forms",
    "last_name",
    "address",
    "postcode",
    "birth_date",
    "email",
    "email_local",
    "phone",
)
# Shipped model trained on synthetic data: scores small data sets (too few records for EM
# to learn from) when the warehouse holds no model of its own yet.
DEFAULT_MODEL_PATH = CONFIG_DIR / "identity_model.json"


@dataclass
class LinkageModel:
    """A trained (or loaded) Splink model as a versioned artefact."""

    settings_json: str
    version: str
    # One dict per comparison level (plus the prior), keys = IDENTITY_MATCH_WEIGHTS_SCHEMA.names.
    match_weights: list[dict[str, Any]]
    trained: bool
    training_notes: list[str] = field(default_factory=list)


def comparisons(config: IdentityConfig) -> list:
    """The configured comparisons, hand-built on purpose.

    splink.comparison_library's JaroWinklerAtThresholds and ExactMatch give the same levels as
    last_name, email and phone here, but Splink 5.0 writes a comparison's class name into the
    settings JSON as its description (it ignores `comparison_description`: every comparison
    below is stored as "CustomComparison"), so switching would change every model version.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    tf = set(config.probabilistic.term_frequency_adjustments)
    similarity = config.probabilistic.name_similarity_thresholds

    def exact_or_else(column: str, description: str):
        return cl.CustomComparison(
            output_column_name=column,
            comparison_description=description,
            comparison_levels=[
                cll.NullLevel(column),
                cll.ExactMatchLevel(column, term_frequency_adjustments=column in tf),
                cll.ElseLevel(),
            ],
        )

    built = {
        "first_name": cl.CustomComparison(
            output_column_name="first_name",
            comparison_description="First name (household members differ here)",
            comparison_levels=[
                cll.NullLevel("first_name"),
                cll.ExactMatchLevel("first_name", term_frequency_adjustments="first_name" in tf),
                cll.ArrayIntersectLevel("first_name_forms", 1).configure(label_for_charts="Nickname match"),
                *(cll.JaroWinklerLevel("first_name", threshold) for threshold in similarity),
                cll.ElseLevel(),
            ],
        ),
        "last_name": cl.CustomComparison(
            output_column_name="last_name",
            comparison_description="Last name",
            comparison_levels=[
                cll.NullLevel("last_name"),
                cll.ExactMatchLevel("last_name", term_frequency_adjustments="last_name" in tf),
                *(cll.JaroWinklerLevel("last_name", threshold) for threshold in similarity),
                cll.ElseLevel(),
            ],
        ),
        # Street and postcode in one comparison: among non-matches they agree together, so
        # two comparisons would count a shared home twice.
        "address": cl.CustomComparison(
            output_column_name="address",
            comparison_description="Street address and postcode",
            comparison_levels=[
                cll.CustomLevel(
                    "(address_l IS NULL OR address_r IS NULL) AND (postcode_l IS NULL OR postcode_r IS NULL)"
                ).configure(is_null_level=True, label_for_charts="Address and postcode missing"),
                cll.CustomLevel(
                    "address_l = address_r AND postcode_l = postcode_r",
                    label_for_charts="Same address and postcode",
                ),
                cll.CustomLevel(
                    "address_l = address_r", label_for_charts="Same address, postcode differs or missing"
                ),
                cll.CustomLevel("postcode_l = postcode_r", label_for_charts="Same postcode only"),
                cll.ElseLevel(),
            ],
        ),
        # No "within a year" levels: for telling people apart a birth date is either the
        # same (up to a typo or a day/month swap) or it is not.
        "birth_date": cl.CustomComparison(
            output_column_name="birth_date",
            comparison_description="Birth date",
            comparison_levels=[
                cll.NullLevel("birth_date"),
                cll.ExactMatchLevel("birth_date"),
                cll.CustomLevel(
                    "levenshtein(CAST(birth_date_l AS VARCHAR), CAST(birth_date_r AS VARCHAR)) <= 1 "
                    "OR (year(birth_date_l) = year(birth_date_r) AND month(birth_date_l) = day(birth_date_r) "
                    "AND day(birth_date_l) = month(birth_date_r))",
                    label_for_charts="Typo or day/month swap",
                ),
                cll.ElseLevel(),
            ],
        ),
        # Exact address only: mailbox names are mostly built from the person's name
        # (john.smith@...), so "same mailbox at another provider" would count the name twice
        # and join namesakes.
        "email": exact_or_else("email", "Email address"),
        "phone": exact_or_else("phone", "Phone (E.164)"),
    }
    return [built[name] for name in config.probabilistic.comparisons]


def _rule(rule: str | tuple[str, ...]):
    from splink import block_on
    from splink.blocking_rule_library import CustomRule

    return CustomRule(rule) if isinstance(rule, str) else block_on(*rule)


def settings_creator(config: IdentityConfig):
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=comparisons(config),
        blocking_rules_to_generate_predictions=[_rule(r) for r in config.probabilistic.blocking_rules],
        # Comparison levels and partial weights per pair: the evidence a reviewer reads.
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        max_iterations=25,
        em_convergence=0.0001,
    )


@contextlib.contextmanager
def _quiet_splink():
    """Splink logs every untrainable level at WARNING; keep run logs to what matters."""
    logger = logging.getLogger("splink")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _round_floats(value: Any) -> Any:
    """10 significant digits: parallel float sums may differ in the last bits between runs."""
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return value
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v) for v in value]
    return value


def model_from_settings(settings: dict[str, Any], trained: bool, notes: list[str]) -> LinkageModel:
    canonical = _round_floats({k: v for k, v in settings.items() if k != "linker_uid"})
    settings_json = json.dumps(canonical, sort_keys=True)
    version = hashlib.sha256(settings_json.encode()).hexdigest()[:12]
    return LinkageModel(
        settings_json=settings_json, version=version, match_weights=[], trained=trained, training_notes=notes
    )


def floor_m_probabilities(settings: dict[str, Any], floor: float) -> dict[str, Any]:
    """Raise every m-probability to at least `floor`, renormalized per comparison.

    EM sets m to 0 for levels true matches never reached in its sample (a person who
    moved, a CRM name typo); weight -inf would forbid such a match forever, whatever the
    other evidence says.
    """
    for comparison in settings["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        values = [max(lv.get("m_probability") or 0.0, floor) for lv in levels]
        total = sum(values)
        for level, value in zip(levels, values, strict=True):
            level["m_probability"] = value / total
    return settings


def _match_weight_rows(linker, version: str) -> list[dict[str, Any]]:
    rows = []
    for rec in linker._settings_obj._parameters_as_detailed_records:
        bayes_factor = rec.bayes_factor
        rows.append(
            {
                "model_version": version,
                "comparison": rec.comparison_name,
                "comparison_sort_order": rec.comparison_sort_order,
                "comparison_vector_value": rec.comparison_vector_value,
                "level": rec.label_for_charts,
                "sql_condition": rec.sql_condition,
                "is_null_level": bool(rec.is_null_level),
                "m_probability": rec.m_probability,
                "u_probability": rec.u_probability,
                "bayes_factor": bayes_factor,
                "match_weight": rec.log2_bayes_factor,
                "has_tf_adjustments": bool(rec.has_tf_adjustments),
                "tf_adjustment_column": rec.tf_adjustment_column,
            }
        )
    return rows


@contextlib.contextmanager
def _use_catalog(conn: duckdb.DuckDBPyConnection, scratch: str):
    """Splink creates unqualified tables: point them at the scratch catalog, then restore."""
    catalog, schema = conn.execute("SELECT current_database(), current_schema()").fetchall()[0]
    conn.execute(f'USE "{scratch}"')
    try:
        yield
    finally:
        conn.execute(f'USE "{catalog}"."{schema}"')


def score_pairs(
    conn: duckdb.DuckDBPyConnection,
    scratch: str,
    config: IdentityConfig,
    model_json: str | None = None,
    fallback_model_json: str | None = None,
) -> tuple[LinkageModel | None, int]:
    """Train (or load) the model and write `{scratch}.probabilistic_links`.

    Trains when no `model_json` is given and there are at least
    `probabilistic.min_records_to_train` input records; otherwise scores with
    `model_json`, else `fallback_model_json`, else the packaged default model. Returns
    the model (None when the step is disabled) and the number of pairs written: pairs
    scoring at least the review threshold.
    """
    from splink import DuckDBAPI, Linker

    prob = config.probabilistic
    require = " OR ".join(f"{c} IS NOT NULL" for c in prob.require_any_of)
    # Household phones and family mailboxes (ambiguous values) are hidden from the model.
    columns = ", ".join(
        f"CASE WHEN {c} IN (SELECT value FROM {scratch}.ambiguous_identifiers WHERE id_type = '{c}') "
        f"THEN NULL ELSE {c} END AS {c}"
        if c in ("email", "phone")
        else c
        for c in SPLINK_INPUT_COLUMNS
    )
    conn.execute(
        f"CREATE OR REPLACE TABLE {scratch}.splink_input AS "
        f"SELECT record_id, {columns} FROM {scratch}.records WHERE {require}"
    )
    n_input = conn.execute(f"SELECT count(*) FROM {scratch}.splink_input").fetchall()[0][0]
    _create_empty_links(conn, scratch)
    if not prob.enabled or n_input < 2:
        return None, 0
    if model_json is None and n_input < prob.min_records_to_train:
        model_json = fallback_model_json or _default_model_json()
        if model_json is None:
            return None, 0

    notes: list[str] = []
    with _quiet_splink(), _use_catalog(conn, scratch):
        db_api = DuckDBAPI(conn)
        if model_json is None:
            linker = Linker(db_api.register("splink_input"), settings_creator(config), log_level=None)
            _train(linker, config, notes)
            settings = floor_m_probabilities(linker.misc.save_model_to_json(), prob.m_probability_floor)
            linker.table_management.delete_tables_created_by_splink_from_db()
            model = model_from_settings(settings, trained=True, notes=notes)
        else:
            settings = _with_prior_for_this_data(db_api, json.loads(model_json), config, notes)
            notes.insert(0, f"scored with a given model ({n_input} records)")
            model = model_from_settings(settings, trained=False, notes=notes)
        # Predict from the artefact itself, so stored JSON and links always agree.
        predictor = Linker(
            DuckDBAPI(conn).register("splink_input"),
            json.loads(model.settings_json),
            log_level=None,
        )
        model.match_weights = _match_weight_rows(predictor, model.version)
        predictions = predictor.inference.predict(
            threshold_match_probability=prob.review_probability_threshold, warning_mode="never"
        )
        evidence = _evidence_sql(model.match_weights)
        conn.execute(
            f"""
            INSERT INTO probabilistic_links
            SELECT least(record_id_l, record_id_r), greatest(record_id_l, record_id_r),
                   match_probability, match_weight, {evidence or "NULL"}
            FROM {predictions.physical_name}
            """
        )
        predictor.table_management.delete_tables_created_by_splink_from_db()
    n_pairs = conn.execute(f"SELECT count(*) FROM {scratch}.probabilistic_links").fetchall()[0][0]
    return model, n_pairs


def _evidence_sql(match_weights: list[dict[str, Any]]) -> str:
    """Per comparison: the level reached and its partial match weight (tf-adjusted)."""
    levels: dict[str, list[tuple[int, str]]] = {}
    for row in match_weights:
        if row["comparison"] != "probability_two_random_records_match":
            levels.setdefault(row["comparison"], []).append((row["comparison_vector_value"], row["level"]))
    parts = []
    for comparison, values in levels.items():
        cases = " ".join(
            f"WHEN {value} THEN '{label.replace(chr(39), chr(39) * 2)}'" for value, label in values
        )
        parts.append(
            f"'{comparison}: ' || CASE \"gamma_{comparison}\" {cases} ELSE '?' END"
            f" || ' (' || printf('%+.1f', \"mw_{comparison}\") || ')'"
        )
    return "concat_ws('; ', " + ", ".join(parts) + ")" if parts else "NULL"


def _default_model_json() -> str | None:
    return DEFAULT_MODEL_PATH.read_text(encoding="utf-8") if DEFAULT_MODEL_PATH.exists() else None


def _create_empty_links(conn: duckdb.DuckDBPyConnection, scratch: str) -> None:
    conn.execute(
        f"CREATE OR REPLACE TABLE {scratch}.probabilistic_links ("
        "record_id_l BIGINT, record_id_r BIGINT, match_probability DOUBLE, match_weight DOUBLE, "
        "evidence VARCHAR)"
    )


def _with_prior_for_this_data(db_api, settings: dict[str, Any], config: IdentityConfig, notes: list[str]):
    """A given model keeps its m and u, but the prior depends on the data's size (one record
    in N matches): re-estimate it here from the deterministic prior rules."""
    from splink import Linker

    linker = Linker(
        db_api.register("splink_input", table_name="splink_input_prior"), settings, log_level=None
    )
    before = linker._settings_obj._probability_two_random_records_match
    try:
        linker.training.estimate_probability_two_random_records_match(
            [_rule(r) for r in config.probabilistic.prior_rules], recall=config.probabilistic.prior_recall
        )
    except ValueError as exc:
        notes.append(f"prior kept: {exc}")
        return settings
    after = linker._settings_obj._probability_two_random_records_match
    if not 0 < after < 1:
        linker._settings_obj._probability_two_random_records_match = before
        notes.append("prior kept: the prior rules found no pairs")
    else:
        notes.append(f"prior re-estimated for this data: {after:.3g} (model had {before:.3g})")
    updated = linker.misc.save_model_to_json()
    linker.table_management.delete_tables_created_by_splink_from_db()
    return updated


def _train(linker, config: IdentityConfig, notes: list[str]) -> None:
    prob = config.probabilistic
    try:
        linker.training.estimate_probability_two_random_records_match(
            [_rule(r) for r in prob.prior_rules], recall=prob.prior_recall
        )
    except ValueError as exc:
        notes.append(f"prior kept at default: {exc}")
    linker.training.estimate_u_using_random_sampling(max_pairs=prob.u_max_pairs, seed=prob.seed)
    for rule in prob.em_blocking_rules:
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                _rule(rule),
                estimate_without_term_frequencies=True,
                max_pairs=prob.em_max_pairs,
            )
        except Exception as exc:  # an EM pass over too few pairs fails; the others still count
            notes.append(f"EM pass {rule!r} skipped: {type(exc).__name__}: {str(exc)[:200]}")
