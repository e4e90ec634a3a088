"""HubSpot contacts: batch upsert by email, one contact per person."""
