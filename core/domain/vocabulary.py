"""The domain's words: the stages of the buyer's journey, the marketplace's action codes
and storefronts, and what became of a push. Plain enums, in a module of their own so that
anything may name them without loading the models (the CLI's options do, at start)."""

from __future__ import annotations

import enum


class Stage(enum.StrEnum):
    """The buyer's journey. Order matters: see `core.stages.rank`."""

    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    DISQUALIFIED = "disqualified"


class Action(enum.StrEnum):
    """The documented marketplace action codes. Unknown codes are kept verbatim as strings."""

    INSTALL = "INS"
    CONTACT_ME = "PLT"
    DO_NOT_CONTACT = "DNC"
    CREATE = "Create"
    START_TEST_DRIVE = "StartTestDrive"


class Channel(enum.StrEnum):
    """Where in Microsoft's storefronts the customer acted (the LeadSource's source part)."""

    AZURE_MARKETPLACE = "azure_marketplace"
    AZURE_PORTAL = "azure_portal"
    APPSOURCE = "appsource"
    TEST_DRIVE = "test_drive"
    TEST = "test"


class Outcome(enum.StrEnum):
    """What became of one record of a push that didn't land (PushResult.error_class)."""

    RETRYABLE = "retryable"  # the same request may pass later: back off and try again
    PERMANENT = "permanent"  # never as it is: a dead letter with the CRM's answer
    FATAL = "fatal"  # configuration or credentials: the target stops
    CONVERTED = "converted"  # the CRM record can no longer be written (a converted lead)


class QuarantineReason(enum.StrEnum):
    """Why a raw lead was kept in landing instead of becoming a lead."""

    MALFORMED = "malformed"  # can't be read: the field and the fix are said
    TEST = "test"  # Microsoft's test lead (MSFT_TEST_)
    INVALID_EMAIL = "invalid_email"  # no usable email: no one to deliver
    UNPROCESSABLE = "unprocessable"  # processing it broke: reported, kept, the rest went on
    ERASED = "erased"  # a person who asked to be forgotten: never a lead again, payload redacted
