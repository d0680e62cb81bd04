//! Values of command-line options.

use std::path::PathBuf;
use std::time::Duration;
use wasce_engine::{Error, Val};

/// Parse `200ms`, `2s`, `1.5s`, `1m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = text.find(|c: char| c.is_ascii_alphabetic()).map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration (try 200ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use ms, s or m)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{text}` is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parse a size in bytes: `65536`, `64K`, `64KiB`, `64M`, `64MiB`, `1G`, `1GiB` (units are
/// powers of 1024 whichever way they are written; `B` and case do not matter).
pub fn size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{text}` is not a size (try 65536, 64KiB, 64MiB, 1GiB)");
    let value: u64 = num.parse().map_err(|_| bad())?;
    if !unit.trim_start().starts_with(|c: char| c.is_ascii_alphabetic()) && !unit.trim().is_empty() {
        return Err(bad());
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use K, M, G or KiB, MiB, GiB)")),
    };
    value.checked_mul(1 << shift).ok_or_else(|| format!("`{text}` is too large"))
}

/// Parse `NAME=MODULE` (`--preload`).
pub fn preload(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("`{text}` is not NAME=MODULE (e.g. lib=lib.wasm)")),
    }
}

/// Parse an argument of `--invoke`d function of type `ty`.
pub fn invoke_arg(text: &str, ty: wasce_compiler::module::WasmType) -> Result<Val, Error> {
    use wasce_compiler::module::WasmType as T;
    let bad = || Error::Usage(format!("cannot parse `{text}` as {ty}"));
    Ok(match ty {
        T::I32 => Val::I32(text.parse::<i32>().or_else(|_| text.parse::<u32>().map(|v| v as i32)).map_err(|_| bad())?),
        T::I64 => Val::I64(text.parse::<i64>().or_else(|_| text.parse::<u64>().map(|v| v as i64)).map_err(|_| bad())?),
        T::F32 => Val::F32(text.parse::<f32>().map_err(|_| bad())?.to_bits()),
        T::F64 => Val::F64(text.parse::<f64>().map_err(|_| bad())?.to_bits()),
        _ => return Err(Error::Usage(format!("cannot pass a {ty} from the command line"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("64mb"), Ok(64 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert!(size("").is_err());
        assert!(size("MiB").is_err());
        assert!(size("1.5G").is_err());
        assert!(size("-1").is_err());
        assert!(size("64XB").unwrap_err().contains("unknown unit"));
        assert!(size("99999999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert!(duration("0s").is_err());
        assert!(duration("5h").is_err());
    }

    #[test]
    fn preloads() {
        assert_eq!(preload("lib=a/b.wasm"), Ok(("lib".to_string(), PathBuf::from("a/b.wasm"))));
        assert!(preload("lib").is_err());
        assert!(preload("=x").is_err());
        assert!(preload("x=").is_err());
    }
}

/// One `-W` option.
#[derive(Clone, Debug, PartialEq)]
pub enum WasmOption {
    /// A WebAssembly feature on or off.
    Feature(wasce_engine::Features, bool),
    /// `unknown-imports-trap`: link function imports nothing defines as functions that fail
    /// when called (`wasce exec` only).
    UnknownImportsTrap(bool),
}

/// Parse `NAME=y|n` (also `yes`/`no`, `true`/`false`, `1`/`0`; `NAME` alone means on).
pub fn wasm_option(text: &str) -> Result<WasmOption, String> {
    let (name, value) = text.split_once('=').unwrap_or((text, "y"));
    let on = match value {
        "y" | "yes" | "true" | "1" => true,
        "n" | "no" | "false" | "0" => false,
        _ => return Err(format!("`{value}` in `{text}` is not y or n")),
    };
    if name == "unknown-imports-trap" {
        return Ok(WasmOption::UnknownImportsTrap(on));
    }
    if name == "all" {
        return Ok(WasmOption::Feature(wasce_engine::Features::all(), on));
    }
    match wasce_engine::Features::by_name(name) {
        Some(f) => Ok(WasmOption::Feature(f, on)),
        None => {
            let mut known: Vec<_> = wasce_engine::Features::TABLE.iter().map(|(n, _, _)| *n).collect();
            known.push("all");
            known.push("unknown-imports-trap");
            Err(format!("unknown WebAssembly option `{name}` (known: {})", known.join(", ")))
        }
    }
}
