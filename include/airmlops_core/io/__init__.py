"""Data access: URIs on local disk or S3, frames, SQL, the training window, the SQL sink."""
