//! The deterministic simulator. It depends only on `chronon-engine`.
