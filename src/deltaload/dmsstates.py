"""DMS Serverless replication states, as the service documents them (shared, dependency-free).

The workflow (replication.py) judges and tears down replications by them; the local engine
(local/dms) passes through them. One list, so that the two cannot drift apart.
"""

from __future__ import annotations

# DMS Serverless replication states after StartReplication, in order, before "running"
# (DMS user guide, "AWS DMS Serverless components":
# https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Serverless.Components.html).
# The guide names them in title case; the API Reference leaves Replication.Status open
# ("The current status of the serverless replication"); these are the wire spellings
# DescribeReplications answers for the guide's states.
SERVERLESS_STARTING = (
    "initializing",
    "preparing_metadata_resources",
    "testing_connection",
    "fetching_metadata",
    "calculating_capacity",
    "provisioning_capacity",
    "replication_starting",
)
