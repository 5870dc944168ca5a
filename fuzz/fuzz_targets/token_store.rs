//! `tokens.toml` text → [`gatehouse::auth::token_store::parse`]. Pure (no `file =` token is
//! read), so any input may be tried. Must never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/fuzz/tokens.toml");
    match gatehouse::auth::token_store::parse(text, file) {
        Ok(specs) => {
            for spec in &specs {
                let _ = format!("{spec:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an Err carries at least one error");
            for error in &errors {
                let _ = error.to_string();
            }
        }
    }
});
