"""Zoho CRM Leads: insert and upsert (duplicate check on a unique key field), COQL reads."""
