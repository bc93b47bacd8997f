"""Personal data masking and hashing for ingest: the implementation is :mod:`gridhub.core.pii`.

It lives in the kernel because the ClickHouse sink masks dead letters too (connectors must not
import a stream domain: importing ``streams.ingest`` registers its agents on the Faust app).
"""

from gridhub.core.pii import (  # noqa: F401  (re-exported)
    LABELS,
    REGION,
    STRUCTURAL_FIELDS,
    find_pii,
    looks_like_person,
    mask_fields,
    mask_name,
    mask_phone,
    mask_text,
    masked_reporter,
    names_in,
    nfkc,
    normalize_phone,
    phone_region_ok,
    reporter_hash,
)
