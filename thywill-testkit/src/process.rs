//! Real processes for multi-process tests (being written).
