"""Pure-Python core: no rclpy, no message packages. Everything here is unit-testable."""
