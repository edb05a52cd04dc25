"""Where the APIs are mounted: shared by the service and its light client (no imports)."""

BI_PREFIX = "/apis/bi.slices.eu/v1alpha2"
API_PREFIX = "/api/v1"
