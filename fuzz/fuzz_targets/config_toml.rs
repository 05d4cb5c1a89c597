#![no_main]
//! Arbitrary text -> the appliance configuration parser (TOML, `EPA_…` overrides, validation).
//! Must never panic: every defect is a typed error whose message renders. A configuration that
//! parses must print (`to_toml_redacted`) and parse back to the same value when it holds no
//! secret to redact.

use firmware_config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte picks whether the tail of the input is also applied as an override.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let parsed = if mode & 1 == 1 {
        // Split "text ## VAR=value" into a file and one environment override.
        let (file, var) = text.split_once("##").unwrap_or((text, ""));
        let vars: Vec<(String, String)> = var
            .split_once('=')
            .map(|(k, v)| (format!("EPA_{}", k.trim()), v.to_owned()))
            .into_iter()
            .collect();
        Config::parse_with_env(file, "fuzz.toml", vars)
    } else {
        Config::parse(text, "fuzz.toml")
    };
    match parsed {
        Ok(config) => {
            let printed = config.to_toml_redacted();
            if config.http.bearer_token.is_none() {
                let back = Config::parse(&printed, "printed.toml")
                    .expect("a printed valid configuration parses again");
                assert_eq!(back, config, "print/parse round trip");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
