"""Incidents: one per use case and due day that was missed or at risk, with its timeline."""

from kiban.incidents.log import Incident, IncidentEvent, IncidentLog

__all__ = ["Incident", "IncidentEvent", "IncidentLog"]
