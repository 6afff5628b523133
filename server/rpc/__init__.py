"""The RPC layer: protobuf in and out, domain errors mapped to Connect codes."""
