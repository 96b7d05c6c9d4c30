//! systemd unit files, read as text (no systemd needed): `ExecStart=`, `ListenStream=`,
//! `Environment=`, and the service a socket unit activates.

use std::path::{Path, PathBuf};

use serde::Serialize;
use why502_host::read_to_string_bounded;

/// Where unit files live, most specific first.
pub const DEFAULT_UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

const MAX_UNITS: usize = 4096;
const MAX_UNIT_FILE: u64 = 64 * 1024;

/// One directive of a unit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitDirective {
    pub key: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitFile {
    /// `php8.2-fpm.service`.
    pub name: String,
    pub path: PathBuf,
    pub directives: Vec<UnitDirective>,
}

impl UnitFile {
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a UnitDirective> + 'a {
        self.directives.iter().filter(move |d| d.key == key)
    }

    /// The service a `.socket` unit starts: `Service=`, else the same name.
    pub fn activated_service(&self) -> Option<String> {
        let stem = self.name.strip_suffix(".socket")?;
        Some(
            self.values("Service")
                .last()
                .map(|d| d.value.clone())
                .unwrap_or_else(|| format!("{stem}.service")),
        )
    }
}

/// Parse a unit file: `Key=Value` lines in any section, `\` continuations joined, `#`/`;`
/// comments skipped.
pub fn parse_unit(name: &str, path: &Path, text: &str) -> UnitFile {
    let mut directives = Vec::new();
    let mut pending: Option<(String, String, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some((key, mut value, at)) = pending.take() {
            let (part, more) = continuation(line);
            value.push(' ');
            value.push_str(part);
            if more {
                pending = Some((key, value, at));
            } else {
                directives.push(UnitDirective {
                    key,
                    value,
                    line: at,
                });
            }
            continue;
        }
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || line.starts_with('[')
        {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (value, more) = continuation(value.trim());
        let key = key.trim().to_string();
        if more {
            pending = Some((key, value.to_string(), i + 1));
        } else {
            directives.push(UnitDirective {
                key,
                value: value.to_string(),
                line: i + 1,
            });
        }
    }
    if let Some((key, value, line)) = pending {
        directives.push(UnitDirective { key, value, line });
    }
    UnitFile {
        name: name.to_string(),
        path: path.to_path_buf(),
        directives,
    }
}

fn continuation(s: &str) -> (&str, bool) {
    match s.strip_suffix('\\') {
        Some(rest) => (rest.trim_end(), true),
        None => (s, false),
    }
}

/// Every `.service` and `.socket` unit in `dirs`; a name found in an earlier directory hides
/// the same name in later ones, as systemd's search path does.
pub fn read_units(dirs: &[PathBuf]) -> (Vec<UnitFile>, Vec<String>) {
    let mut units: Vec<UnitFile> = Vec::new();
    let mut unknowns = Vec::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                unknowns.push(format!("cannot list {}: {e}", dir.display()));
                continue;
            }
        };
        let mut names: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.ends_with(".service") || name.ends_with(".socket")).then(|| (name, e.path()))
            })
            .take(MAX_UNITS)
            .collect();
        names.sort();
        for (name, path) in names {
            if units.len() >= MAX_UNITS || units.iter().any(|u| u.name == name) {
                continue;
            }
            // Enabled units are symlinks into /lib; masked ones point at /dev/null, which
            // the bounded reader refuses: nothing to read there.
            match read_to_string_bounded(&path, MAX_UNIT_FILE) {
                Ok(text) => units.push(parse_unit(&name, &path, &text)),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    if !path
                        .canonicalize()
                        .is_ok_and(|p| p == Path::new("/dev/null"))
                    {
                        unknowns.push(e.to_string());
                    }
                }
            }
        }
    }
    (units, unknowns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_and_sections() {
        let text = "[Unit]\nDescription=App\n\n[Service]\n# comment\nExecStart=/usr/bin/gunicorn \\\n  --bind unix:/run/app.sock \\\n  app:app\nEnvironment=PORT=8000\n";
        let u = parse_unit("app.service", Path::new("/x/app.service"), text);
        let exec: Vec<_> = u.values("ExecStart").collect();
        assert_eq!(exec.len(), 1);
        assert_eq!(
            exec[0].value,
            "/usr/bin/gunicorn --bind unix:/run/app.sock app:app"
        );
        assert_eq!(exec[0].line, 6);
        assert_eq!(u.values("Environment").next().unwrap().value, "PORT=8000");
    }

    #[test]
    fn socket_units_name_their_service() {
        let u = parse_unit(
            "gunicorn.socket",
            Path::new("/x"),
            "[Socket]\nListenStream=/run/gunicorn.sock\n",
        );
        assert_eq!(u.activated_service().as_deref(), Some("gunicorn.service"));
        let u = parse_unit(
            "a.socket",
            Path::new("/x"),
            "[Socket]\nListenStream=8000\nService=b.service\n",
        );
        assert_eq!(u.activated_service().as_deref(), Some("b.service"));
    }
}
