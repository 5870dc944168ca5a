//! HTTP helpers the pipeline composes: body types and limits, byte-counting bodies, path
//! normalisation, request hygiene, forwarded headers, the connection idle deadline, and the
//! outbound client builder.

pub mod body;
pub mod client;
pub mod counted;
pub mod forwarded;
pub mod h2_trailers;
pub mod head_scan;
pub mod idle;
mod io_delegate;
pub mod normalize;
pub mod sanitize;
