"""Thin rclpy nodes wiring the core to topics, parameters, timers and QoS."""
