"""Units the code converts between, each defined once."""

SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400
MINUTES_PER_HOUR = 60
HOURS_PER_DAY = 24
MIB = 1024 * 1024  # bytes
BYTES_PER_GB = 1000**3  # a decimal gigabyte, as the model hub shows file sizes
