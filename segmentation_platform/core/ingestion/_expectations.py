"""Great-expectations suites derived from the source contracts.

great_expectations is imported inside the functions: importing it costs 5-7 s, which
every code-location load and test run would otherwise pay.
"""

from dataclasses import dataclass

import pandas as pd

from segmentation_platform.contracts import SourceContract


@dataclass
class SuiteOutcome:
    success: bool
    evaluated: int
    failed: list[dict]  # expectation type, column, observed problem


def contract_expectations(contract: SourceContract) -> list:
    """One expectation per contract rule, so the suite can never drift from the contract."""
    import great_expectations.expectations as gxe

    expectations = [gxe.ExpectTableColumnsToMatchSet(column_set=contract.column_names, exact_match=False)]
    for column in contract.columns:
        expectations.append(gxe.ExpectColumnToExist(column=column.name))
        if column.required:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column.name))
        if column.min_value is not None or column.max_value is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=column.name, min_value=column.min_value, max_value=column.max_value
                )
            )
        if column.allowed_values:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(column=column.name, value_set=list(column.allowed_values))
            )
    # Keys are unique within a daily partition (repeats are quarantined at parse time).
    expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=[*contract.key, "_partition_date"]))
    return expectations


def validate_with_contract(contract: SourceContract, frame: pd.DataFrame) -> SuiteOutcome:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # Progress bars would flood the Dagster run logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = context.suites.add(gx.ExpectationSuite(name=f"{contract.name}_contract"))
    for expectation in contract_expectations(contract):
        suite.add_expectation(expectation)
    batch = (
        context.data_sources.add_pandas(name=contract.name)
        .add_dataframe_asset(name=contract.name)
        .add_batch_definition_whole_dataframe(name="rows")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(suite)
    failed = []
    for outcome in result.results:
        if not outcome.success:
            config = outcome.expectation_config
            failed.append(
                {
                    "expectation": config.type,
                    "column": config.kwargs.get("column") or config.kwargs.get("column_list"),
                    "unexpected_count": (outcome.result or {}).get("unexpected_count"),
                }
            )
    return SuiteOutcome(success=bool(result.success), evaluated=len(result.results), failed=failed)
