import textwrap

import pytest

from segmentation_platform.core.activation import (
    CONFIG_PATH,
    load_activation_config,
)
from segmentation_platform.core.config import ConfigError

VALID = """\
version: 1
holdouts:
  experiments:
    - name: a
      salt: s1
      share: 0.1
      starts: 2025-01-01
      segments: [loyal]
destinations:
  - name: ads
    type: ad_audience
    purpose: marketing
    consent: any
    sync_mode: full
    segments: all
    fields: [email_sha256, phone_sha256, action_segment]
"""


def _load(tmp_path, text):
    path = tmp_path / "destinations.yaml"
    path.write_text(textwrap.dedent(text))
    return load_activation_config(path)


def test_packaged_config_loads_with_the_webhook_off():
    config = load_activation_config(CONFIG_PATH)
    assert {d.type for d in config.destinations} == {
        "crm_upsert_csv",
        "map_list",
        "cdp_traits_jsonl",
        "ad_audience",
        "webhook",
    }
    webhook = next(d for d in config.destinations if d.type == "webhook")
    assert not webhook.enabled and webhook.webhook.url is None
    assert webhook not in config.enabled_destinations
    assert config.suppression_path.exists()
    assert all(d.consent for d in config.destinations if d.is_marketing)


def test_valid_config(tmp_path):
    config = _load(tmp_path, VALID)
    (ads,) = config.destinations
    assert (
        ads.format == "csv"
        and ads.segments is None
        and ads.contact_fields == ("email_sha256", "phone_sha256")
    )
    assert config.experiments[0].covers("loyal") and not config.experiments[0].covers("champions")


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (
            ("fields: [email_sha256, phone_sha256, action_segment]", "fields: [email, action_segment]"),
            16,
            "not email",
        ),
        (("    consent: any\n", ""), 10, "needs `consent`"),
        (("sync_mode: full", "sync_mode: sometimes"), 14, "must be one of ['full', 'delta']"),
        (
            ("    segments: all\n", "    segments: all\n    colour: red\n"),
            16,
            "unknown field 'destinations.ads.colour'",
        ),
        (("share: 0.1", "share: 0.9"), 6, "must lie in [0.0, 0.5]"),
        (("purpose: marketing", "purpose: service"), 12, "always marketing"),
        (
            ("fields: [email_sha256, phone_sha256, action_segment]", "fields: [action_segment]"),
            16,
            "to match on",
        ),
        (
            ("fields: [email_sha256, phone_sha256, action_segment]", "fields: [cltv_typo]"),
            16,
            "unknown field",
        ),
        (("starts: 2025-01-01", "starts: [2025"), 8, "invalid YAML"),
    ],
)
def test_errors_name_file_line_and_reason(tmp_path, change, line, message):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, VALID.replace(*change))
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'destinations.yaml'}:{line}:"), text
    assert message in text


def test_overlapping_experiments_and_holdouts_in_marketing_are_refused(tmp_path):
    overlapping = VALID.replace(
        "      segments: [loyal]\n",
        "      segments: [loyal]\n    - name: b\n      salt: s2\n      share: 0.1\n      starts: 2025-03-01\n"
        "      segments: all\n",
    )
    with pytest.raises(ConfigError, match="overlaps experiment 'a'"):
        _load(tmp_path, overlapping)
    with pytest.raises(ConfigError, match="never reach a marketing"):
        _load(
            tmp_path, VALID.replace("    segments: all\n", "    segments: all\n    include_holdouts: true\n")
        )


def test_enabled_webhook_needs_an_endpoint(tmp_path):
    webhook = VALID.replace(
        "    type: ad_audience",
        "    type: webhook",
    ).replace(
        "fields: [email_sha256, phone_sha256, action_segment]", "fields: [customer_key, action_segment]"
    )
    with pytest.raises(ConfigError, match="needs `url` or `url_env`"):
        _load(tmp_path, webhook)
    assert _load(tmp_path, webhook.replace("    segments: all\n", "    segments: all\n    url: http://h/x\n"))
