"""QKD networks: emulated links between key-management entities that serve ETSI GS QKD 014 keys."""
