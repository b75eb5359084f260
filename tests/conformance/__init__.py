"""Raw-bytes MQTT conformance tests (numbered by feature, like mosquitto's suite)."""
