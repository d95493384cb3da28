"""The orchestrator: replica state machine, lifecycle operations, journal and locks."""
