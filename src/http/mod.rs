//! HTTP helpers the pipeline composes: body types and limits, byte-counting bodies, path
//! normalisation, request hygiene, forwarded and other added headers, the connection idle deadline, the
//! outbound client builder, and HTTP/1.1 on the upstream wire.

pub mod added;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod counted;
pub mod forwarded;
pub(crate) mod h2_trailers;
pub(crate) mod head_scan;
pub(crate) mod idle;
mod io_delegate;
pub mod normalize;
pub(crate) mod park;
pub(crate) mod sanitize;
pub mod wire;
