"""The score stage: bulk scoring of partitions with the champion."""
