"""The validate stage: the promotion gate and its decision."""
