"""Operations end-to-end harness: a generated data set served by a real `dagster dev`.

`dagster dev` runs the webserver, the daemon (run queue, backfills, run monitoring) and a
code server off the repo's `workspace.yaml`, against a throw-away DAGSTER_HOME holding a
copy of the repo's `dagster.yaml`, so the tests exercise the instance config operators get.
Test modules reach everything through the fixtures; `benchmarks/bench_backfill.py` loads
this file to drive the same `DagsterDev` at a larger scale.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.e2e.browser import CHROMIUM, Browser

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCATION = "segmentation_platform"
REPOSITORY = "__repository__"
DAILY_JOB, IDENTITY_JOB, WEEKLY_JOB = "daily_ingestion", "identity_resolution", "weekly_segmentation"

FINISHED_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
# BulkActionStatus values the daemon leaves a backfill in once it is done with it.
FINISHED_BACKFILL_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# DuckDB's file-lock failure ("Could not set lock on file ... Conflicting lock is held"), and
# SQLite's should the instance storage itself ever be contended.
LOCK_ERROR = re.compile(r"could not set lock|conflicting lock|database is locked", re.IGNORECASE)
# The engine event a run worker (a child process of the code server) writes as it starts.
RUN_WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


@dataclass(frozen=True)
class DataSet:
    """Generated landing files (and ground truth) under `path`, covering [start, end]."""

    path: Path
    start: date
    end: date
    persons: int

    @property
    def days(self) -> list[str]:
        return [(self.start + timedelta(days=i)).isoformat() for i in range((self.end - self.start).days + 1)]

    def weekly_keys_within(self, all_keys: list[str]) -> list[str]:
        """Weekly partition keys (window start dates) whose whole week lies inside the data."""
        last = self.end + timedelta(days=1)
        return [
            key
            for key in all_keys
            if date.fromisoformat(key) >= self.start and date.fromisoformat(key) + timedelta(days=7) <= last
        ]


def generate_data(path: Path, persons: int, start: date, end: date, seed: int = 20250101) -> DataSet:
    from segmentation_platform.synthetic.generator import generate

    generate(path, persons=persons, start=start, end=end, seed=seed)
    return DataSet(Path(path), start, end, persons)


@dataclass
class Stage:
    """One step of the pipeline as an operator launches it: a backfill, or a plain run."""

    name: str
    job: str
    asset_keys: list[list[str]]
    partitions: list[str]  # empty: an unpartitioned job, launched as one run
    skip_reason: str | None = None


@dataclass
class StageResult:
    stage: Stage
    status: str  # the backfill's BulkActionStatus, or the run's status
    runs: list[dict]
    seconds: float
    backfill: dict | None = None

    @property
    def succeeded(self) -> bool:
        return (
            self.status in ("COMPLETED_SUCCESS", "COMPLETED", "SUCCESS")
            and bool(self.runs)
            and all(run["status"] == "SUCCESS" for run in self.runs)
        )


class GraphQLError(RuntimeError):
    pass


class _ExitedEarly(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_WATCHDOG = """
import os, signal, sys, time
owner, group = int(sys.argv[1]), int(sys.argv[2])
while True:
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        os.killpg(group, signal.SIGKILL)
    time.sleep(1)
"""


def kill_group_with_owner(group: int) -> None:
    """SIGKILL process group `group` if this (pytest) process dies without its teardown.

    A watchdog joins the group, so a normal teardown's killpg ends it as well; without it a
    killed or timed-out pytest leaves `dagster dev` or Chromium running for good.
    """
    subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(group)],
        process_group=group,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class DagsterDev:
    """`dagster dev` in its own process group, driven through the webserver's GraphQL API.

    Teardown kills the whole group: `dagster dev` 1.13 does not reliably exit on SIGTERM
    or SIGINT (the daemon hangs after "Daemon threads shut down"), and the run workers it
    launched must not outlive the session.
    """

    def __init__(self, data: DataSet, home: Path):
        self.data, self.home = data, Path(home)
        self.log_path = self.home / "dagster-dev.log"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def warehouse(self) -> Path:
        return self.data.path / "warehouse.duckdb"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 300) -> "DagsterDev":
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "dagster.yaml", self.home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "SEGMENTATION_DATA_DIR": str(self.data.path),
            "SEGMENTATION_START_DATE": self.data.start.isoformat(),
            "PYTHONUNBUFFERED": "1",
        }
        # A probed free port can be taken before the webserver binds it: retry on another.
        for attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "a") as log:
                log.write(f"\n=== attempt {attempt + 1}: port {self.port} ===\n")
                log.flush()
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(self.port)]
                    + ["-w", str(REPO_ROOT / "workspace.yaml")],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                )
            kill_group_with_owner(self.process.pid)
            try:
                self._wait_until_ready(time.monotonic() + timeout)
                return self
            except _ExitedEarly:
                self._kill_group()
            except BaseException:
                self.stop()
                raise
        raise RuntimeError(f"dagster dev did not start in 3 attempts:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=3)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self._kill_group()

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no dagster dev log)"
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))
        kept = [line for line in text.splitlines() if "Warning" not in line and not line.startswith("  ")]
        return "\n".join(kept[-lines:])

    def _wait_until_ready(self, deadline: float) -> None:
        """The webserver answers, the code location is loaded, the daemons heartbeat."""
        stage = "webserver"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise _ExitedEarly()
            try:
                if stage == "webserver":
                    with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                        json.load(response)
                    stage = "code location"
                if stage == "code location":
                    entries = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
                    entry = next((e for e in entries if e["name"] == LOCATION), None)
                    if entry and entry["loadStatus"] == "LOADED":
                        loaded = entry["locationOrLoadError"]
                        if loaded["__typename"] == "PythonError":
                            raise RuntimeError(f"code location failed to load: {loaded['message']}")
                        stage = "daemon"
                if stage == "daemon":
                    statuses = self.graphql(DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
                    healthy = {s["daemonType"]: s["healthy"] for s in statuses if s["required"]}
                    if healthy.get("BACKFILL") and healthy.get("QUEUED_RUN_COORDINATOR"):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, GraphQLError):
                pass
            time.sleep(1)
        raise RuntimeError(f"dagster dev not ready (waiting for the {stage}):\n{self.log_tail()}")

    # -- GraphQL ---------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 120) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]

    def job_assets(self, job: str) -> list[dict]:
        """Asset nodes of a job: key, group, dependencies, partition keys and stats."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job}
        return self.graphql(ASSET_NODES_QUERY, {"pipeline": selector})["assetNodes"]

    def assets(self, keys: list[list[str]]) -> list[dict]:
        return self.graphql(ASSETS_BY_KEY_QUERY, {"keys": [{"path": k} for k in keys]})["assetNodes"]

    def launch_backfill(self, job: str, partitions: list[str], title: str) -> str:
        """A job backfill, as Jobs -> <job> -> Partitions -> "Launch backfill" starts it.

        With single-run backfill policies the daemon turns the range into one run of the whole
        job. (An asset backfill of the same selection runs in waves, one per daemon tick, as
        unpartitioned and offset-dependent assets wait for their parents.)
        """
        repository = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
        sets = self.graphql(PARTITION_SETS_QUERY, {"repository": repository, "job": job})[
            "partitionSetsOrError"
        ]
        params = {
            "selector": {"partitionSetName": sets["results"][0]["name"], "repositorySelector": repository},
            "partitionNames": partitions,
            "title": title,
        }
        result = self.graphql(LAUNCH_BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"backfill {title!r} not launched: {result}")
        return result["backfillId"]

    def launch_run(self, job: str, tags: dict[str, str] | None = None) -> str:
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "pipelineName": job,
            },
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self.graphql(LAUNCH_RUN_MUTATION, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"run of {job} not launched: {result}")
        return result["run"]["runId"]

    def backfill(self, backfill_id: str) -> dict:
        result = self.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"backfill {backfill_id}: {result}")
        return result

    def wait_for_backfill(self, backfill_id: str, timeout: float) -> dict:
        return self._poll(
            lambda: self.backfill(backfill_id),
            lambda backfill: backfill["status"] in FINISHED_BACKFILL_STATUSES,
            lambda backfill: (
                f"backfill {backfill_id} still {backfill['status']}, runs "
                + str([(r["runId"][:8], r["status"]) for r in backfill["runs"]])
            ),
            timeout,
        )

    def run(self, run_id: str) -> dict:
        result = self.graphql(RUN_QUERY, {"id": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise GraphQLError(f"run {run_id}: {result}")
        return result

    def wait_for_run(self, run_id: str, timeout: float) -> dict:
        return self._poll(
            lambda: self.run(run_id),
            lambda run: run["status"] in FINISHED_RUN_STATUSES,
            lambda run: f"run {run_id} still {run['status']}",
            timeout,
        )

    def runs(self) -> list[dict]:
        return self.graphql(RUNS_QUERY)["runsOrError"]["results"]

    def run_worker_pid(self, run_id: str) -> int | None:
        """The pid of the process executing a run, once the run worker has announced it."""
        for event in self.run_events(run_id):
            if found := RUN_WORKER_PID.search(event.get("message") or ""):
                return int(found[1])
        return None

    def wait_for_retry(self, run_id: str, timeout: float) -> dict:
        """The run the daemon launched to retry `run_id` (run_retries), once it has finished."""
        return self._poll(
            lambda: next((r for r in self.runs() if _tag(r, "dagster/parent_run_id") == run_id), None),
            lambda retry: retry is not None and retry["status"] in FINISHED_RUN_STATUSES,
            lambda retry: f"retry of run {run_id}: {retry['status'] if retry else 'not launched'}",
            timeout,
        )

    def _poll(self, fetch: Callable, finished: Callable, describe: Callable, timeout: float):
        """`fetch()` once a second until `finished` holds of it; on timeout, `describe` the last
        value and show the end of the `dagster dev` log."""
        deadline = time.monotonic() + timeout
        while not finished(value := fetch()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{describe(value)} after {timeout:.0f}s\n{self.log_tail()}")
            time.sleep(1)
        return value

    def run_events(self, run_id: str) -> Iterator[dict]:
        cursor = None
        while True:
            connection = self.graphql(LOGS_QUERY, {"id": run_id, "cursor": cursor})["logsForRun"]
            yield from connection["events"]
            cursor = connection["cursor"]
            if not connection["hasMore"]:
                return

    def run_log_lines(self, run_id: str) -> Iterator[str]:
        """Every event message and error of a run, then its captured stdout/stderr files."""
        for event in self.run_events(run_id):
            yield event.get("message") or ""
            yield from _error_chain(event.get("error"))
        for path in sorted((self.home / "storage" / run_id).glob("compute_logs/*")):
            if path.suffix in (".out", ".err"):
                yield from path.read_text(errors="replace").splitlines()

    def lock_errors(self, run_id: str) -> list[str]:
        return [line for line in self.run_log_lines(run_id) if LOCK_ERROR.search(line)]

    def step_failures(self, run_id: str) -> list[str]:
        """`step: error <- cause` of every failed step, for assertion messages."""
        return [
            f"{event['stepKey']}: {' <- '.join(_error_chain(event.get('error')))}"
            for event in self.run_events(run_id)
            if event["__typename"] == "ExecutionStepFailureEvent"
        ]

    # -- the pipeline as an operator runs it ---------------------------------------------------

    def plan_stages(self, weekly_partitions: Callable[[list[str]], list[str]]) -> list[Stage]:
        """Backfill the data's days, run identity, backfill the chosen weeks.

        A stage is skipped, with the reason, while its job has no assets yet or reads an
        asset that no earlier stage materializes (other stages land in parallel).
        """
        daily_assets = self.job_assets(DAILY_JOB)
        identity_assets = self.job_assets(IDENTITY_JOB)
        weekly_assets = self.job_assets(WEEKLY_JOB)
        if not daily_assets:
            raise AssertionError(f"job {DAILY_JOB} has no assets")

        def keys(assets):
            return [asset["assetKey"]["path"] for asset in assets]

        daily = Stage("daily", DAILY_JOB, keys(daily_assets), self.data.days)
        identity = Stage("identity", IDENTITY_JOB, keys(identity_assets), [])
        weekly = Stage("weekly", WEEKLY_JOB, keys(weekly_assets), [])
        if not identity_assets:
            identity.skip_reason = f"job {IDENTITY_JOB} has no assets in the code location yet"
        if not weekly_assets:
            weekly.skip_reason = f"job {WEEKLY_JOB} has no assets in the code location yet"
            return [daily, identity, weekly]
        produced = {
            tuple(key)
            for stage in (daily, identity, weekly)
            if not stage.skip_reason
            for key in stage.asset_keys
        }
        missing = sorted(
            {"/".join(dep["path"]) for asset in weekly_assets for dep in asset["dependencyKeys"]}
            - {"/".join(key) for key in produced}
        )
        weekly.partitions = weekly_partitions(
            next(a["partitionKeys"] for a in weekly_assets if a["isPartitioned"])
        )
        if missing:
            weekly.skip_reason = (
                f"weekly snapshots read {', '.join(missing)}, which no earlier stage materializes yet"
            )
        elif not weekly.partitions:
            weekly.skip_reason = "no weekly partition inside the data range"
        return [daily, identity, weekly]

    def run_stages(
        self, stages: list[Stage], timeout: float, concurrently: bool = False
    ) -> dict[str, StageResult]:
        """Launch the runnable stages one after another (each once the last finished), or all at once."""
        runnable = [stage for stage in stages if not stage.skip_reason]
        if concurrently:
            handles = [(stage, self._launch(stage)) for stage in runnable]
            return {stage.name: self._wait(stage, handle, timeout) for stage, handle in handles}
        return {stage.name: self._wait(stage, self._launch(stage), timeout) for stage in runnable}

    def _launch(self, stage: Stage) -> tuple[str, str, float]:
        began = time.monotonic()
        if stage.partitions:
            return (
                "backfill",
                self.launch_backfill(stage.job, stage.partitions, f"e2e {stage.name}"),
                began,
            )
        return "run", self.launch_run(stage.job, {"e2e/stage": stage.name}), began

    def _wait(self, stage: Stage, handle: tuple[str, str, float], timeout: float) -> StageResult:
        kind, ident, began = handle
        if kind == "backfill":
            backfill = self.wait_for_backfill(ident, timeout)
            return StageResult(
                stage, backfill["status"], backfill["runs"], time.monotonic() - began, backfill
            )
        run = self.wait_for_run(ident, timeout)
        return StageResult(stage, run["status"], [run], time.monotonic() - began)

    def explain(self, result: StageResult) -> str:
        """A stage's outcome with the root cause of every failed step, for assertion messages."""
        lines = [f"{result.stage.name}: {result.status} after {result.seconds:.0f}s"]
        for run in result.runs:
            lines.append(f"  run {run['runId'][:8]} {run['status']}")
            if run["status"] != "SUCCESS":
                lines += [f"    {failure}" for failure in self.step_failures(run["runId"])]
        if result.backfill and result.backfill.get("error"):
            lines.append(f"  backfill error: {result.backfill['error']['message']}")
        return "\n".join(lines)


def _tag(run: dict, key: str) -> str | None:
    return next((tag["value"] for tag in run["tags"] if tag["key"] == key), None)


def _error_chain(error: dict | None) -> Iterator[str]:
    while error:
        yield error["message"].strip()
        error = error.get("cause")


WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
DAEMON_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
_ASSET_FIELDS = """
  assetKey { path } groupName isMaterializable isPartitioned jobNames
  dependencyKeys { path } partitionKeys partitionStats { numMaterialized numFailed numMaterializing }
"""
ASSET_NODES_QUERY = (
    f"query($pipeline: PipelineSelector!) {{ assetNodes(pipeline: $pipeline) {{ {_ASSET_FIELDS} }} }}"
)
ASSETS_BY_KEY_QUERY = (
    f"query($keys: [AssetKeyInput!]) {{ assetNodes(assetKeys: $keys) {{ {_ASSET_FIELDS} }} }}"
)
PARTITION_SETS_QUERY = """
query($repository: RepositorySelector!, $job: String!) {
  partitionSetsOrError(repositorySelector: $repository, pipelineName: $job) { ... on PartitionSets { results { name } } } }
"""
LAUNCH_BACKFILL_MUTATION = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }
"""
LAUNCH_RUN_MUTATION = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }
"""
_RUN_FIELDS = "runId jobName status creationTime startTime endTime tags { key value }"
BACKFILL_QUERY = f"""
query($id: String!) {{ partitionBackfillOrError(backfillId: $id) {{ __typename
  ... on PartitionBackfill {{ id status numPartitions timestamp endTimestamp error {{ message }}
      runs {{ {_RUN_FIELDS} }} }}
  ... on Error {{ message }} }} }}
"""
RUN_QUERY = f"query($id: ID!) {{ runOrError(runId: $id) {{ __typename ... on Run {{ {_RUN_FIELDS} }} ... on Error {{ message }} }} }}"
RUNS_QUERY = f"{{ runsOrError {{ ... on Runs {{ results {{ {_RUN_FIELDS} }} }} }} }}"
LOGS_QUERY = """
query($id: ID!, $cursor: String) { logsForRun(runId: $id, afterCursor: $cursor, limit: 5000) {
  ... on EventConnection { cursor hasMore events { __typename
      ... on MessageEvent { message stepKey }
      ... on ErrorEvent { error { message cause { message cause { message } } } } } } } }
"""


@pytest.fixture(scope="session")
def e2e_data(tmp_path_factory) -> DataSet:
    """200 persons over 60 days (2025-01-01 .. 2025-03-01), with the generator's broken rows."""
    return generate_data(tmp_path_factory.mktemp("e2e-data"), 200, date(2025, 1, 1), date(2025, 3, 1))


@pytest.fixture
def start_dagster_dev(tmp_path) -> Iterator[Callable[[DataSet], DagsterDev]]:
    """Starts a `dagster dev` of the test's own over a data set, for drills that would disturb
    the session's; each is killed with its process group at teardown."""
    started: list[DagsterDev] = []

    def start(data: DataSet) -> DagsterDev:
        started.append(DagsterDev(data, tmp_path / f"dagster-home-{len(started)}"))
        return started[-1].start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def dagster_dev(tmp_path_factory, e2e_data) -> Iterator[DagsterDev]:
    """One `dagster dev` for the session, serving `e2e_data`; killed with its process group."""
    server = DagsterDev(e2e_data, tmp_path_factory.mktemp("dagster-home"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    """A headless Chromium page for the module; CI fails rather than skips without Chromium."""
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}: CI must install it for the browser tests", pytrace=False)
        pytest.skip(message)
    browser = Browser(tmp_path_factory.mktemp("chromium-profile"), kill_group_with_owner)
    try:
        yield browser
    finally:
        browser.close()
