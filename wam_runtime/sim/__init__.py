"""Reference MuJoCo world, scripted expert, dataset, training and evaluation (no rclpy)."""
