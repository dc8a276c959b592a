"""FireflyFS."""
