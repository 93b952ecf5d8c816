//! Collecting option values from the command line and ini files.
//!
//! This layer only knows names and kinds: it rejects unknown options and
//! resolves precedence, and leaves the meaning of each value to `Config`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::options::{self, Kind, OptionName, OptionSpec};
use super::{ConfigError, ConfigErrors, Problems};

/// Where a value came from, so that errors can point at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    Ini { path: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine => f.write_str("command line"),
            Origin::Ini { path, line } => write!(f, "{} line {line}", path.display()),
        }
    }
}

/// One occurrence of an option.
#[derive(Clone, Debug)]
pub struct Setting {
    pub value: String,
    pub origin: Origin,
}

impl Setting {
    /// Resolves a file name given in this setting. Relative names in an ini
    /// file are taken relative to that file's directory, so a configuration
    /// directory can be moved as a whole; on the command line they are
    /// relative to the working directory as usual.
    pub fn path(&self, name: &str) -> PathBuf {
        let path = Path::new(name);
        match &self.origin {
            Origin::Ini { path: ini, .. } if path.is_relative() => ini
                .parent()
                .map_or_else(|| path.to_path_buf(), |dir| dir.join(path)),
            _ => path.to_path_buf(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(RawOptions),
    /// `--check`: validate these options and every file they name, then
    /// exit without serving (like `nginx -t`).
    Check(RawOptions),
    Help,
    Version,
}

/// Every option's settings after precedence has been applied: at most one
/// setting for single-valued options and switches, all of them, ini files
/// first, for repeatable ones.
#[derive(Debug, Default)]
pub struct RawOptions {
    settings: BTreeMap<&'static str, Vec<Setting>>,
}

impl RawOptions {
    /// The setting of a single-valued option or switch.
    pub fn single(&self, option: OptionName) -> Option<&Setting> {
        self.all(option).first()
    }

    /// Every setting of a repeatable option.
    pub fn all(&self, option: OptionName) -> &[Setting] {
        self.settings
            .get(option.as_str())
            .map_or(&[], Vec::as_slice)
    }
}

/// Parses `args` (without the program name), then reads every `--ini`
/// file. Every problem is reported, not only the first.
pub fn parse_args<I>(args: I) -> Result<Invocation, ConfigErrors>
where
    I: IntoIterator<Item = OsString>,
{
    let (invocation, problems) = collect(args);
    problems.into_result(invocation)
}

/// What `args` ask for, with every problem found on the way: options that
/// could be read are kept, so that their values can be checked too and
/// all problems reported at once.
pub(crate) fn collect<I>(args: I) -> (Invocation, Problems)
where
    I: IntoIterator<Item = OsString>,
{
    let mut problems = Problems::default();
    let args: Vec<String> = args
        .into_iter()
        .filter_map(|arg| {
            arg.into_string()
                .map_err(|arg| ConfigError::Usage(format!("argument {arg:?} is not valid UTF-8")))
                .map_err(|error| problems.push(error))
                .ok()
        })
        .collect();

    let mut command_line = Vec::new();
    let mut check_only = false;
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => return (Invocation::Help, Problems::default()),
            "-V" | "--version" => return (Invocation::Version, Problems::default()),
            "--check" => {
                check_only = true;
                continue;
            }
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            problems.push(ConfigError::Usage(format!(
                "unexpected argument `{arg}`: options are written `--name value` (see `cachet --help`)"
            )));
            continue;
        };
        let (name, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        let Some(spec) = problems.check(known(name, &Origin::CommandLine)) else {
            // An unknown option's value, if it has one, would read as a
            // stray argument: skip it too.
            if inline_value.is_none() && iter.peek().is_some_and(|next| !next.starts_with("--")) {
                iter.next();
            }
            continue;
        };
        let value = match (inline_value, spec.kind) {
            (Some(value), _) => value,
            // A bare switch means true; a following boolean word is its value.
            (None, Kind::Switch) => match iter.peek() {
                Some(next) if parse_bool(next).is_some() => iter.next().unwrap_or_default(),
                _ => "true".to_owned(),
            },
            (None, _) => match iter.next_if(|next| !is_option(next)) {
                Some(value) => value,
                None => {
                    problems.push(ConfigError::Invalid {
                        option: spec.option,
                        value: String::new(),
                        origin: Origin::CommandLine,
                        reason: format!("expects a value: --{} {}", spec.name, spec.value),
                    });
                    continue;
                }
            },
        };
        command_line.push((
            spec,
            Setting {
                value,
                origin: Origin::CommandLine,
            },
        ));
    }

    let mut from_files = Vec::new();
    for (_, setting) in command_line
        .iter()
        .filter(|(spec, _)| spec.option == OptionName::Ini)
    {
        from_files.extend(read_ini(&PathBuf::from(&setting.value), &mut problems));
    }
    let merged = merge(from_files, command_line, &mut problems);
    let invocation = if check_only {
        Invocation::Check(merged)
    } else {
        Invocation::Run(merged)
    };
    (invocation, problems)
}

/// Whether a command-line word is an option name rather than a value. A
/// value may itself start with `-` (a negative number, say), but never with
/// the name of a known option.
fn is_option(word: &str) -> bool {
    word.strip_prefix("--").is_some_and(|body| {
        let name = body.split_once('=').map_or(body, |(name, _)| name);
        options::lookup(name).is_some() || matches!(name, "help" | "version" | "check")
    })
}

/// Reads the `[uwsgi]` and `[cachet]` sections of an ini file. Other sections
/// belong to other programs sharing the file (uWSGI allows that too) and are
/// skipped; keys before any section header are an error. The settings
/// that could be read are returned even when others could not, so that
/// their values are checked too.
fn read_ini(path: &Path, problems: &mut Problems) -> Vec<(&'static OptionSpec, Setting)> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_ini(path, &text, problems),
        Err(source) => {
            problems.push(ConfigError::Invalid {
                option: OptionName::Ini,
                value: path.display().to_string(),
                origin: Origin::CommandLine,
                reason: format!("cannot read the file: {source}"),
            });
            Vec::new()
        }
    }
}

fn parse_ini(
    path: &Path,
    text: &str,
    problems: &mut Problems,
) -> Vec<(&'static OptionSpec, Setting)> {
    let mut settings = Vec::new();
    let mut section: Option<bool> = None; // Some(true) inside a section of ours
    for (index, raw) in text.lines().enumerate() {
        let origin = Origin::Ini {
            path: path.to_path_buf(),
            line: index + 1,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                problems.push(ConfigError::Usage(format!(
                    "{origin}: malformed section header `{line}`"
                )));
                // Whatever follows belongs to a section we cannot name.
                section = Some(false);
                continue;
            };
            section = Some(matches!(name.trim(), "uwsgi" | "cachet"));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            problems.push(ConfigError::Usage(format!(
                "{origin}: expected `key = value`, found `{line}`"
            )));
            continue;
        };
        match section {
            None => {
                problems.push(ConfigError::Usage(format!(
                    "{origin}: `{}` is outside any section; put options under [uwsgi] or [cachet]",
                    key.trim()
                )));
                continue;
            }
            Some(false) => continue,
            Some(true) => {}
        }
        let Some(spec) = problems.check(known(key.trim(), &origin)) else {
            continue;
        };
        if spec.option == OptionName::Ini {
            problems.push(ConfigError::Invalid {
                option: OptionName::Ini,
                value: value.trim().to_owned(),
                origin,
                reason: "ini files cannot include other ini files; pass each with --ini".to_owned(),
            });
            continue;
        }
        settings.push((
            spec,
            Setting {
                value: value.trim().to_owned(),
                origin,
            },
        ));
    }
    settings
}

fn known(name: &str, origin: &Origin) -> Result<&'static OptionSpec, ConfigError> {
    options::lookup(name).ok_or_else(|| ConfigError::Unknown {
        name: name.to_owned(),
        origin: origin.clone(),
        suggestion: options::closest(name)
            .map(|candidate| format!("; did you mean `{candidate}`?"))
            .unwrap_or_default(),
    })
}

/// Applies precedence: the command line overrides ini files for single
/// values; repeatable options add up. The same single-valued option twice in
/// one source is a mistake worth stopping for, whatever the order.
fn merge(
    from_files: Vec<(&'static OptionSpec, Setting)>,
    command_line: Vec<(&'static OptionSpec, Setting)>,
    problems: &mut Problems,
) -> RawOptions {
    let mut files: BTreeMap<&'static str, Vec<Setting>> = BTreeMap::new();
    let mut cli: BTreeMap<&'static str, Vec<Setting>> = BTreeMap::new();
    // By name, so that problems come in the same order whatever the input's.
    let mut specs = BTreeMap::new();
    for (spec, setting) in from_files {
        specs.insert(spec.name, spec);
        files.entry(spec.name).or_default().push(setting);
    }
    for (spec, setting) in command_line {
        specs.insert(spec.name, spec);
        cli.entry(spec.name).or_default().push(setting);
    }

    let mut merged = RawOptions::default();
    for (name, spec) in specs {
        let from_file = files.remove(name).unwrap_or_default();
        let from_cli = cli.remove(name).unwrap_or_default();
        let chosen = if spec.kind == Kind::Repeatable {
            from_file.into_iter().chain(from_cli).collect()
        } else {
            let source = if from_cli.is_empty() {
                from_file
            } else {
                from_cli
            };
            if let [first, second, ..] = source.as_slice() {
                problems.push(ConfigError::Repeated {
                    option: spec.option,
                    first: first.origin.clone(),
                    second: second.origin.clone(),
                });
            }
            source.into_iter().take(1).collect()
        };
        merged.settings.insert(name, chosen);
    }
    merged
}

/// uWSGI's boolean words.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RawOptions, ConfigErrors> {
        match parse_args(args.iter().map(OsString::from))? {
            Invocation::Run(raw) => Ok(raw),
            other => panic!("expected options, got {other:?}"),
        }
    }

    #[test]
    fn switches_are_bare_or_valued() {
        let raw = run(&["--master", "--https", "127.0.0.1:0"]).unwrap();
        assert_eq!(raw.single(OptionName::Master).unwrap().value, "true");
        let raw = run(&["--master", "false", "--cache=10"]).unwrap();
        assert_eq!(raw.single(OptionName::Master).unwrap().value, "false");
        assert_eq!(raw.single(OptionName::Cache).unwrap().value, "10");
    }

    #[test]
    fn unknown_option_is_named_with_a_hint() {
        let error = run(&["--http-too", "127.0.0.1:1"]).unwrap_err().to_string();
        assert!(error.contains("`http-too`"), "{error}");
        assert!(error.contains("did you mean `http-to`"), "{error}");
    }

    #[test]
    fn single_value_twice_on_the_command_line_is_an_error() {
        let error = run(&["--cache", "1", "--cache", "2"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`cache`"), "{error}");
    }

    #[test]
    fn ini_sections_keys_and_comments() {
        let text = "; comment\n[other]\nwhatever = 1\n[uwsgi]\nmaster = true\n# another\nhttp-to = a:1\nhttp-to = b:2\n[cachet]\ncache = 5\n";
        let mut problems = Problems::default();
        let settings = parse_ini(Path::new("/etc/cachet/r.ini"), text, &mut problems);
        problems.into_result(()).unwrap();
        let names: Vec<_> = settings.iter().map(|(spec, _)| spec.name).collect();
        assert_eq!(names, ["master", "http-to", "http-to", "cache"]);
        assert_eq!(
            settings[1].1.origin,
            Origin::Ini {
                path: "/etc/cachet/r.ini".into(),
                line: 7
            }
        );
        assert_eq!(
            settings[0].1.path("crt.pem"),
            PathBuf::from("/etc/cachet/crt.pem")
        );
    }

    #[test]
    fn ini_rejects_unknown_keys_and_sectionless_keys() {
        let ini = |text: &str| {
            let mut problems = Problems::default();
            parse_ini(Path::new("r.ini"), text, &mut problems);
            problems.into_result(()).unwrap_err().to_string()
        };
        let error = ini("[uwsgi]\nhttps-to = x\n");
        assert!(
            error.contains("`https-to`") && error.contains("r.ini line 2"),
            "{error}"
        );
        let error = ini("cache = 1\n");
        assert!(error.contains("outside any section"), "{error}");
    }

    #[test]
    fn command_line_overrides_ini_and_repeatables_add_up() {
        let file = |value: &str, line| Setting {
            value: value.into(),
            origin: Origin::Ini {
                path: "r.ini".into(),
                line,
            },
        };
        let cli = |value: &str| Setting {
            value: value.into(),
            origin: Origin::CommandLine,
        };
        let cache = OptionName::Cache.spec();
        let to = OptionName::HttpTo.spec();
        let mut problems = Problems::default();
        let raw = merge(
            vec![(cache, file("1", 1)), (to, file("a:1", 2))],
            vec![(cache, cli("2")), (to, cli("b:2"))],
            &mut problems,
        );
        problems.into_result(()).unwrap();
        assert_eq!(raw.single(OptionName::Cache).unwrap().value, "2");
        let backends: Vec<_> = raw
            .all(OptionName::HttpTo)
            .iter()
            .map(|s| s.value.as_str())
            .collect();
        assert_eq!(backends, ["a:1", "b:2"]);
    }
}
