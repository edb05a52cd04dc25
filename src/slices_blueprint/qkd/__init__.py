"""QKD networks: emulated QKD links, ETSI GS QKD 014 KMEs and SAE credentials, per experiment."""
