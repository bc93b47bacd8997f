"""MQTT -> Kafka bridge for sensor events."""
