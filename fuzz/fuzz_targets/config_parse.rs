//! `gateway.toml` text → [`gatehouse::config::parse`] (TOML, unknown keys, units, validation).
//! Pure: `parse` reads no files, so any input may be tried. Must never panic; every error names
//! the file it was given.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/gateway.toml");
    if let Err(errors) = gatehouse::config::parse(path, text) {
        assert!(
            !errors.errors().is_empty(),
            "an Err carries at least one error"
        );
        // Rendering the report is part of what `gatehouse check` does with any input.
        let _ = errors.to_string();
    }
});
