#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rkite::proto::tunnel_fuzz::check(data));
