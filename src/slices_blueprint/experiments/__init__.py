"""Experiments as one file: export, plan, apply, and RO-Crate packing (above resources, qkd
and reservations, whose services it calls)."""
