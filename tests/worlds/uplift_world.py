"""A generated world activated at one snapshot, for measuring a simulated campaign's lift.

Real generator, real ingestion, real identity resolution, real holdouts and exports; only
the segment assignment is a plain recency rule instead of the model stack (the lift does
not care how segments were drawn, and the models would cost minutes per seed).
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import activation, ingestion, measurement, warehouse
from segmentation_platform.core.activation import ActivationConfig, load_activation_config
from segmentation_platform.core.identity import resolve_identities
from segmentation_platform.core.warehouse import tables
from segmentation_platform.synthetic.generator import generate

START, SNAPSHOT = dt.date(2025, 1, 1), dt.date(2025, 3, 3)
END = SNAPSHOT + dt.timedelta(days=measurement.SHORT_WINDOW_DAYS - 1)
WINDOW = [SNAPSHOT + dt.timedelta(days=d) for d in range(measurement.SHORT_WINDOW_DAYS)]
INGESTED = ("web_orders", "pos_transactions", "crm_contacts", "email_events")
PURCHASE_SOURCES = ("web_orders", "pos_transactions")
HOLDOUT_SHARE = 0.3


@dataclass
class UpliftWorld:
    data_dir: Path
    seed: int
    config: ActivationConfig
    config_path: Path

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def exports(self) -> Path:
        return self.data_dir / "exports"

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.warehouse), read_only=read_only)


def ingest(conn: duckdb.DuckDBPyConnection, landing: Path, source: str, days: list[dt.date]) -> None:
    """What the daily ingestion asset does for these days: replace their raw partitions."""
    contract = CONTRACTS[source]
    files = {day: ingestion.landing_files(landing, source, day) for day in days}
    batch = ingestion.parse_landing_files(contract, files, dt.datetime(2025, 6, 1), landing)
    schema = ingestion.raw_schema(contract)
    warehouse.replace_partitions(
        conn,
        schema.table,
        batch.accepted.to_arrow(),
        schema.partition_column,
        days,
        columns=schema.sql_columns,
    )


def assign_segments(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> None:
    """Action segments by days since the last identified purchase before the snapshot."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS segments")
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {tables.SEGMENT_ASSIGNMENTS} AS
        SELECT CAST($snapshot AS DATE) AS snapshot_date, customer_key,
            CASE WHEN max(purchased_at) >= $snapshot - INTERVAL 21 DAY THEN 'active'
                 WHEN max(purchased_at) >= $snapshot - INTERVAL 45 DAY THEN 'cooling'
                 ELSE 'lapsed' END AS action_segment
        FROM ({measurement.purchases_sql(conn)})
        WHERE purchased_at < $snapshot
        GROUP BY customer_key
        """,
        {"snapshot": snapshot},
    )


def write_config(folder: Path) -> Path:
    (folder / "suppression.csv").write_text("email\n")
    path = folder / "destinations.yaml"
    path.write_text(
        f"""version: 1
suppression:
  path: suppression.csv
holdouts:
  experiments:
    - name: spring
      salt: uplift-test
      share: {HOLDOUT_SHARE}
      starts: 2025-01-01
      segments: all
destinations:
  - name: crm
    type: crm_upsert_csv
    purpose: service
    sync_mode: full
    segments: all
    fields: [customer_key, action_segment]
  - name: newsletter
    type: map_list
    purpose: marketing
    consent: email
    sync_mode: delta
    segments: all
    fields: [customer_key, email, action_segment]
  - name: onsite
    type: cdp_traits_jsonl
    purpose: marketing
    consent: any
    sync_mode: delta
    segments: [cooling, lapsed]
    fields: [customer_key, action_segment]
"""
    )
    return path


def build_uplift_world(data_dir: Path, seed: int, persons: int = 700) -> UpliftWorld:
    """Generate, ingest, resolve, segment, hold out and export the snapshot."""
    generate(data_dir, persons=persons, start=START, end=END, seed=seed, broken_share=0.005)
    days = [START + dt.timedelta(days=d) for d in range((END - START).days + 1)]
    config_path = write_config(data_dir)
    config = load_activation_config(config_path)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as conn:
        for source in INGESTED:
            ingest(conn, data_dir / "landing", source, days)
        resolve_identities(conn, now=dt.datetime(2025, 4, 2))
        assign_segments(conn, SNAPSHOT)
        activation.write_holdouts(conn, SNAPSHOT, config)
        results, _ = activation.run_exports(conn, SNAPSHOT, config, data_dir / "exports")
        failed = [r.message for r in results if r.status != "success"]
        assert not failed, failed
    return UpliftWorld(data_dir=data_dir, seed=seed, config=config, config_path=config_path)


def reingest_window(world: UpliftWorld) -> None:
    """Load the outcome window again, campaign files included, as the landing sensor would."""
    with world.connect() as conn:
        for source in PURCHASE_SOURCES:
            ingest(conn, world.data_dir / "landing", source, WINDOW)
