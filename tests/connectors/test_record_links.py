"""Where a record lives in each CRM's own app: the links hot-lead alerts (and the console)
give a salesperson. Built from the ids the CRMs answer with, never from the person."""

from __future__ import annotations

from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.connector import RecordLinks

GUID = "7d577253-3ef0-4a0a-bb7f-8335c2596e70"


def test_salesforce_links_a_lead_a_contact_and_any_record_by_its_id() -> None:
    sales = SalesforceTarget(
        SalesforceConfig(
            name="sales",
            instance_url="https://contoso.my.salesforce.com/",
            client_id="cid",
            client_secret="cs",
            country_field="name",
        )
    )
    assert isinstance(sales, RecordLinks)
    base = "https://contoso.my.salesforce.com"
    assert (
        sales.record_url("00Q5g00000ABCDEFGH") == f"{base}/lightning/r/Lead/00Q5g00000ABCDEFGH/view"
    )
    assert sales.record_url("0035g00000ABCDE") == f"{base}/lightning/r/Contact/0035g00000ABCDE/view"
    assert sales.record_url("00T5g00000ABCDEFGH") == f"{base}/00T5g00000ABCDEFGH"  # a Task
    assert sales.record_url("../../evil?x=1") is None  # not an id: no link


def test_dataverse_links_the_form_of_the_lead_or_the_contact() -> None:
    d365 = DataverseTarget(
        DataverseConfig(
            name="d365",
            environment_url="https://contoso.crm4.dynamics.com",
            authority="https://login.microsoftonline.com/tenant",
            client_id="app",
            client_secret="secret",
        )
    )
    api = "https://contoso.crm4.dynamics.com/api/data/v9.2"
    form = "https://contoso.crm4.dynamics.com/main.aspx?etn={}&pagetype=entityrecord&id=" + GUID
    assert d365.record_url(f"{api}/leads({GUID})") == form.format("lead")
    assert d365.record_url(f"{api}/contacts({GUID})") == form.format("contact")
    assert d365.record_url("not an entity id") is None


def test_hubspot_links_a_contact_once_the_hub_id_is_known() -> None:
    def hubspot(**extra: object) -> HubSpotTarget:
        return HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x", **extra))

    assert hubspot().record_url("5101") is None  # which account: not configured
    eu = hubspot(portal_id=26543219, app_url="https://app-eu1.hubspot.com")
    assert eu.record_url("5101") == "https://app-eu1.hubspot.com/contacts/26543219/record/0-1/5101"
    assert eu.record_url("5101/../x") is None
