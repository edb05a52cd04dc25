"""Advance reservations (leases): equipment admins register, reservations of equipment and
microVM host capacity over time windows, availability, and their clock."""
