"""Incidents: one per use case and due day that was missed or at risk, with its timeline."""

from kiban.incidents.log import Incident, IncidentDraft, IncidentEvent, IncidentLog

__all__ = ["Incident", "IncidentDraft", "IncidentEvent", "IncidentLog"]
