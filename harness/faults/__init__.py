"""Faults below the application: links (our TCP proxy or a real Toxiproxy), processes and
the database, injected and healed on a scenario's schedule (see ``harness.schedule``)."""

__all__: list[str] = []
