"""Data collection at the machine: MQTT payloads, the replay publisher, the client's durable
ingest store, labelling on failure events and eligibility from what was collected.

See docs/EDGE.md for the payload format and the delivery guarantees.
"""
