"""Emporium's messaging plumbing: contracts, envelope, topics, outbox, inbox, Kafka clients."""
