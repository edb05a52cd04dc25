"""QKD networks: emulated links, ETSI GS QKD 014 key management entities, their PKI."""
