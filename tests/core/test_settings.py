from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadbridge.core.settings import ConfigError

TABLE = """
sources:
  - name: table
    kind: marketplace_table
    connection_string: ${AZ_CONN}
    every: 2m
"""


def test_defaults_without_a_file(make_settings) -> None:
    settings = make_settings("")
    assert settings.store == "sqlite:///leadbridge.db" and settings.engine == "single"
    assert settings.qualification.mql_at == 50


def test_interpolation_durations_and_masking(make_settings) -> None:
    settings = make_settings(TABLE, AZ_CONN="AccountName=x;AccountKey=s3cr3t-key==")
    source = settings.source("table")
    assert source.connection_string.get_secret_value().endswith("s3cr3t-key==")
    assert source.every.total_seconds() == 120
    shown = str(settings.masked())
    assert "s3cr3t" not in shown and "**" in shown


def test_default_and_escape_in_interpolation(make_settings) -> None:
    settings = make_settings("store: ${NOPE_DB:-sqlite:///x.db}\nplaceholder: $${literal}\n")
    assert settings.store == "sqlite:///x.db" and settings.placeholder == "${literal}"


def test_env_overrides_top_level_nested_and_list_items_by_name(make_settings) -> None:
    settings = make_settings(
        TABLE,
        AZ_CONN="a",
        LEADBRIDGE_STORE="sqlite:///env.db",
        LEADBRIDGE_HTTP__PORT="9090",
        LEADBRIDGE_QUALIFICATION__MQL_AT="70",
        LEADBRIDGE_SOURCES__TABLE__CONNECTION_STRING="from-env",
        LEADBRIDGE_WEBHOOK_TOKEN="only-used-via-interpolation",
    )
    assert settings.store == "sqlite:///env.db"
    assert settings.http.port == 9090 and settings.qualification.mql_at == 70
    assert settings.source("table").connection_string.get_secret_value() == "from-env"


def test_secret_from_file(make_settings, tmp_path: Path) -> None:
    secret = tmp_path / "conn"
    secret.write_text("AccountName=f;AccountKey=filekey\n", encoding="utf-8")
    settings = make_settings(
        "sources:\n  - name: t\n    kind: marketplace_table\n"
        f"    connection_string_file: {secret}\n"
    )
    assert (
        settings.source("t").connection_string.get_secret_value()
        == "AccountName=f;AccountKey=filekey"
    )


def _problems(make_settings, text: str, **env: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        make_settings(text, **env)
    return {p.key: f"{p.message} | {p.fix}" for p in err.value.problems}


def test_every_problem_names_the_key_and_the_fix(make_settings) -> None:
    problems = _problems(
        make_settings,
        """
engine: kubernetes
http: {port: "eighty"}
qualification: {mql_at: 50, mql_att: 3}
sources:
  - name: table
    kind: marketplace_table
    tabel: Leads
  - name: other
    kind: carrier_pigeon
""",
    )
    assert "use one of: 'single' or 'cluster'" in problems["engine"]
    assert "number" in problems["http.port"]
    assert "spelling" in problems["qualification.mql_att"]
    # all of them at once, including the connectors' own keys
    assert set(problems) >= {"engine", "http.port", "qualification.mql_att"}


def test_connector_keys_are_checked_by_the_connector(make_settings) -> None:
    problems = _problems(
        make_settings,
        """
sources:
  - name: table
    kind: marketplace_table
    tabel: Leads
  - name: other
    kind: carrier_pigeon
  - name: table
    kind: leads_file
    path: x.jsonl
""",
    )
    assert "required" in problems["sources[table].connection_string"]
    assert "spelling" in problems["sources[table].tabel"]
    assert "leads_file" in problems["sources[other].kind"]
    assert "twice" in problems["sources[table]"]


def test_unset_variable_and_unknown_override_target(make_settings) -> None:
    problems = _problems(make_settings, TABLE, LEADBRIDGE_SOURCES__NOPE__TABLE="x")
    assert "AZ_CONN" in problems["sources[table].connection_string"]
    assert "no source named 'nope'" in problems["LEADBRIDGE_SOURCES__NOPE__TABLE"]


def test_bad_yaml_says_where(make_settings) -> None:
    with pytest.raises(ConfigError) as err:
        make_settings("store: [unclosed\n")
    assert "line" in str(err.value)


def test_missing_secret_file(make_settings, tmp_path: Path) -> None:
    problems = _problems(
        make_settings,
        "sources:\n  - name: t\n    kind: marketplace_table\n"
        f"    connection_string_file: {tmp_path}/absent\n",
    )
    assert any("cannot read" in v for v in problems.values())


def test_secrets_never_echoed_in_problems(make_settings) -> None:
    problems = _problems(
        make_settings,
        "sources:\n  - name: t\n    kind: marketplace_table\n"
        "    connection_string: [hunter2-secret]\n",
    )
    assert "hunter2" not in str(problems)


def test_the_example_config_is_valid_and_complete(make_settings, monkeypatch) -> None:
    """config/leadbridge.example.yaml documents every option: it must load, and name each one
    (every config error points to it as the reference)."""
    from leadbridge.core.settings import HttpSettings, QualificationSettings, Settings

    example = Path(__file__).resolve().parents[2] / "config" / "leadbridge.example.yaml"
    text = example.read_text(encoding="utf-8")
    for var in (
        "AZURE_STORAGE_CONNECTION_STRING",
        "SF_CLIENT_ID",
        "SF_CLIENT_SECRET",
        "HUBSPOT_TOKEN",
        "DATAVERSE_CLIENT_ID",
        "DATAVERSE_CLIENT_SECRET",
        "WEBHOOK_SECRET",
        "PC_CLIENT_ID",
        "LEADBRIDGE_WEBHOOK_TOKEN",
        "ZOHO_CLIENT_ID",
        "ZOHO_CLIENT_SECRET",
        "ZOHO_REFRESH_TOKEN",
    ):
        monkeypatch.setenv(var, f"{var.lower()}-value")
    settings = make_settings(text)
    assert {s.name for s in settings.sources} == {"table", "webhook", "export", "referrals"}
    assert settings.source("webhook").kind == "marketplace_https"
    assert {t.name for t in settings.targets} == {
        "sales",
        "marketing",
        "d365",
        "hook",
        "zoho",
        "referrals",
    }  # the referrals' write-back
    for name in [
        *Settings.model_fields,
        *QualificationSettings.model_fields,
        *HttpSettings.model_fields,
    ]:
        assert f"{name}:" in text, f"{name} is not documented in the example config"
    for policy in ("update:", "always", "if_empty", "on_create", "never"):
        assert policy in text, f"the field write policy ({policy}) is not documented"


def test_the_example_config_documents_every_connector_key() -> None:
    from leadbridge.core.connector import connector_class, connector_kinds

    example = Path(__file__).resolve().parents[2] / "config" / "leadbridge.example.yaml"
    text = example.read_text(encoding="utf-8")
    for kind in connector_kinds():
        for name in connector_class(kind).Config.model_fields:
            assert f"{name}:" in text or f"{name}_file:" in text, f"{kind}.{name} undocumented"


def test_the_store_password_is_redacted_from_logs(make_settings) -> None:
    """Its URL goes to SQLAlchemy and, in cluster mode, to procrastinate's pool: whatever
    either logs, the password does not reach a log line, plain or URL-encoded."""
    from leadbridge.core.support.logs import redact

    make_settings("store: postgresql://lb:Tr0ub4dor%263@db.internal/leads\nengine: cluster\n")
    assert "Tr0ub4dor&3" not in redact("auth failed for lb with Tr0ub4dor&3")
    assert "Tr0ub4dor%263" not in redact("postgresql://lb:Tr0ub4dor%263@db.internal/leads")


def _billion_laughs(levels: int = 9) -> str:
    """The classic: nine references to nine lists, nine deep — 9**9 values from ~400 bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        prev, name = chr(ord("a") + n - 1), chr(ord("a") + n)
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_with_the_problem_and_the_fix(make_settings) -> None:
    text = _billion_laughs()
    assert len(text) < 500
    with pytest.raises(ConfigError) as err:
        make_settings(text)
    (problem,) = err.value.problems
    assert problem.key.endswith("leadbridge.yaml")
    assert "more than 100,000 values" in problem.message and "alias bomb" in problem.message
    assert "write the repeated values out" in problem.fix


def test_a_self_referencing_alias_is_refused(make_settings) -> None:
    with pytest.raises(ConfigError) as err:
        make_settings("offers: &loop {x: *loop}\n")
    (problem,) = err.value.problems
    assert "deeper than 64 levels" in problem.message


def test_a_config_with_a_few_anchors_still_loads(make_settings) -> None:
    settings = make_settings(
        """
targets:
  - &hook
    name: hook-a
    kind: webhook
    url: https://a.example.com/leads
    secret: s3cret-s3cret
    every: 5s
  - <<: *hook
    name: hook-b
    url: https://b.example.com/leads
qualification:
  actions: &points {PLT: 60, INS: 30}
  titles:
    - {pattern: "(?i)chief", points: 15}
"""
    )
    assert [t.name for t in settings.targets] == ["hook-a", "hook-b"]
    assert settings.target("hook-b").every.total_seconds() == 5
    assert settings.qualification.actions == {"PLT": 60, "INS": 30}


@pytest.mark.parametrize(
    ("store", "secret", "shown"),
    [
        ("postgresql://lb:pa55word@db.internal/leads", "pa55word", "lb:***@db.internal"),
        ("postgresql://lb@db.internal/leads?password=pa55word", "pa55word", "password=***"),
        ("postgresql://lb:pa%40ss%3Aword@db.internal/leads", "ss", "lb:***@db.internal"),
        (
            "postgresql+psycopg://lb@db/leads?sslmode=require&sslpassword=pa55word",
            "pa55word",
            "sslmode=require",
        ),
    ],
)
def test_config_show_hides_the_store_password_in_every_form(
    make_settings, store: str, secret: str, shown: str
) -> None:
    masked = make_settings(f"store: '{store}'\n").masked()
    assert secret not in masked["store"] and shown in masked["store"]
    assert "db" in masked["store"]  # the rest is still there to check


def test_a_store_password_with_a_bare_at_sign_is_a_problem_not_echoed(make_settings) -> None:
    problems = _problems(make_settings, "store: postgresql://lb:pa55@word@db/leads\n")
    assert "unencoded '@'" in problems["store"] and "%40" in problems["store"]
    assert "pa55" not in str(problems)


def test_a_store_password_in_the_query_is_redacted_from_logs(make_settings) -> None:
    from leadbridge.core.support.logs import redact

    make_settings("store: postgresql://lb@db/leads?password=Qu3ry-pa55%26x\n")
    assert "Qu3ry-pa55&x" not in redact("auth failed: Qu3ry-pa55&x")
    assert "Qu3ry-pa55%26x" not in redact("postgresql://lb@db/leads?password=Qu3ry-pa55%26x")


def test_config_show_hides_every_connector_secret(make_settings) -> None:
    """SecretStr fields, and the secrets inside ordinary strings and header maps."""
    secrets = {
        "AZ": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Azur3Key==;",
        "SF": "sf-client-s3cret",
        "HS": "pat-na1-hubsp0t",
        "HOOK": "webhook-hmac-s3cret",
        "TOKEN": "marketplace-url-t0ken-0123",
    }
    settings = make_settings(
        """
sources:
  - {name: table, kind: marketplace_table, connection_string: "${AZ}"}
  - {name: hook, kind: marketplace_https, token: "${TOKEN}"}
targets:
  - name: sales
    kind: salesforce
    instance_url: https://acme.my.salesforce.com
    client_id: id
    client_secret: ${SF}
  - {name: marketing, kind: hubspot, token: "${HS}"}
  - name: fn
    kind: webhook
    url: https://fn.azurewebsites.net/api/leads?code=Funct10nKey%3D%3D&clientId=default
    secret: ${HOOK}
    headers: {Authorization: Bearer b3arer-t0ken, X-Api-Key: ap1-k3y, X-Team: sales}
  - name: sas
    kind: webhook
    url: https://acct.blob.core.windows.net/in?sv=2022-11-02&sp=w&sig=SaS-s1gnature%2B
    secret: ${HOOK}
  - name: proxy
    kind: webhook
    url: https://relay:Pr0xy-pass@relay.example.com/leads
    secret: ${HOOK}
""",
        **secrets,
    )
    shown = json.dumps(settings.masked())
    for leaked in [
        *secrets.values(),
        "Azur3Key",
        "Funct10nKey",
        "b3arer-t0ken",
        "ap1-k3y",
        "SaS-s1gnature",
        "Pr0xy-pass",
    ]:
        assert leaked not in shown, leaked
    for kept in ["clientId=default", "sv=2022-11-02", "X-Team", "relay.example"]:
        assert kept in shown, kept
    targets = {t["name"]: t for t in settings.masked()["targets"]}
    headers = targets["fn"]["headers"]
    assert headers == {"Authorization": "***", "X-Api-Key": "***", "X-Team": "sales"}
    assert targets["proxy"]["url"] == "https://relay:***@relay.example.com/leads"


def test_secrets_inside_ordinary_values_are_redacted_from_logs(make_settings) -> None:
    """A webhook URL's `?code=` and a credential header are plain strings, not SecretStr:
    they are found the way `config show` finds them, and kept out of every log line."""
    from leadbridge.core.support.logs import redact

    make_settings(
        """
targets:
  - name: fn
    kind: webhook
    url: https://fn.example.net/api/leads?code=Funct10n-k3y%2B
    secret: hmac-s3cret-value
    headers: {X-Api-Key: head3r-ap1-k3y}
"""
    )
    line = redact(
        "POST https://fn.example.net/api/leads?code=Funct10n-k3y%2B X-Api-Key head3r-ap1-k3y"
    )
    assert "Funct10n-k3y" not in line and "head3r-ap1-k3y" not in line
    assert "fn.example.net" in line


@pytest.mark.parametrize(
    "store",
    [
        "mysql://lb:pw@db.internal/leads",
        "oracle://lb:pw@db.internal/leads",
        "postgresql+asyncpg://lb@db.internal/leads",
        "sqlite+aiosqlite:///leads.db",
    ],
)
def test_a_store_leadbridge_cannot_use_is_a_problem(make_settings, store: str) -> None:
    problems = _problems(make_settings, f"store: '{store}'\n")
    assert "not supported" in problems["store"] and "postgresql://" in problems["store"]
    assert "pw" not in problems["store"]


@pytest.mark.parametrize(
    "store",
    [
        "sqlite:///lb.db",
        "postgresql://lb@db/leads",
        "postgres://lb@db/leads",
        "postgresql+psycopg://lb@db/leads",
    ],
)
def test_the_stores_leadbridge_runs_on_load(make_settings, store: str) -> None:
    assert make_settings(f"store: '{store}'\n").store == store


def test_an_unknown_kind_hint_names_only_the_kinds_of_its_section(make_settings) -> None:
    problems = _problems(
        make_settings,
        "sources:\n  - {name: a, kind: nope}\ntargets:\n  - {name: b, kind: nope}\n",
    )
    assert problems["sources[a].kind"].endswith(
        "use one of: leads_file, marketplace_https, marketplace_table, partner_center_referrals"
    )
    target_hint = problems["targets[b].kind"]
    assert "salesforce" in target_hint and "leads_file" not in target_hint


@pytest.mark.parametrize(("first", "second"), [("my-src", "my_src"), ("Sales", "sales")])
def test_names_that_collide_for_env_overrides_are_refused(
    make_settings, first: str, second: str
) -> None:
    problems = _problems(
        make_settings,
        f"targets:\n"
        f"  - {{name: {first}, kind: webhook, url: 'https://a.example/x', secret: s3cret-a}}\n"
        f"  - {{name: {second}, kind: webhook, url: 'https://b.example/x', secret: s3cret-b}}\n",
    )
    problem = problems[f"targets[{second}]"]
    assert f"the same as {first!r}" in problem and "rename one of them" in problem


def test_a_source_file_not_there_yet_is_a_warning_not_an_error(make_settings, tmp_path) -> None:
    from leadbridge.core.settings import config_warnings

    present = tmp_path / "present.jsonl"
    present.write_text("", encoding="utf-8")
    settings = make_settings(
        "sources:\n"
        f"  - {{name: drop, kind: leads_file, path: {tmp_path / 'later.jsonl'}}}\n"
        f"  - {{name: here, kind: leads_file, path: {present}}}\n"
    )  # loads: a drop folder's file may come later
    (warning,) = config_warnings(settings)
    assert warning.key == "sources[drop].path" and "does not exist" in warning.message
    assert config_warnings(settings, sources=["here"]) == []
