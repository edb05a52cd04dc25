"""TEST DOUBLE provider (flavor type ``test-double``): ``driver.py``."""
