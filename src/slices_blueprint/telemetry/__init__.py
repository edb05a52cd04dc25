"""Per-VM metrics history: samples pushed by host agents, turned into rates for charts."""
