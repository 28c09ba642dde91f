"""Use-cases the faces call (run, workflow tools, demo, later up/pool/prepare/doctor/backup)."""
