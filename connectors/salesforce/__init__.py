"""Salesforce Leads: sObject Collections upsert on an External ID field."""
