//! The FFmpeg version cfgs ffmpeg-next itself compiles with (`feature = "ffmpeg_7_0"` and so
//! on), from the metadata ffmpeg-sys-next passes to its direct dependents, so the few raw FFmpeg
//! calls here match the installed libraries.
fn main() {
    for (name, value) in std::env::vars() {
        let Some(version) = name.strip_prefix("DEP_FFMPEG_") else { continue };
        let feature = version.to_lowercase();
        println!(r#"cargo:rustc-check-cfg=cfg(feature, values("{feature}"))"#);
        if value == "true" {
            println!(r#"cargo:rustc-cfg=feature="{feature}""#);
        }
    }
}
