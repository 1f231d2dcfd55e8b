//! The HTTP front door: any request head. Must never panic, and an upgrade's
//! head length must lie within the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let courier_net::http::Route::Upgrade { head_len, .. } = courier_net::http::route(data) {
        assert!(head_len <= data.len());
    }
});
