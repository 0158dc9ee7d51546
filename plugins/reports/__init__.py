"""Built-in report sections, their figures and the published reference numbers they show."""
