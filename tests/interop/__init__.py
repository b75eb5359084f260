"""End-to-end interop tests with real MQTT clients (paho-mqtt, gmqtt, mosquitto_pub/sub)."""
