"""Built-in report sections."""
