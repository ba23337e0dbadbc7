#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rkite::fuzz_checks::proxy_protocol(data));
