"""Dynamics 365 / Dataverse leads: upsert by alternate key through OData $batch."""
