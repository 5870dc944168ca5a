//! HTTP helpers the pipeline composes: body types and limits, byte-counting bodies, path
//! normalisation, request hygiene, forwarded headers, and the connection idle deadline.

pub mod body;
pub mod counted;
pub mod forwarded;
pub mod h2_trailers;
pub mod head_scan;
pub mod idle;
pub mod normalize;
pub mod sanitize;
